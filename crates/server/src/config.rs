//! Command line and environment configuration.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "scimgate",
    version,
    about = "SCIM 2.0 provisioning service for B2B SaaS apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the server (migrations run first).
    Serve(ServeArgs),
    /// Manages the integration keys that authenticate the app to the management API.
    #[command(subcommand)]
    IntegrationKeys(IntegrationKeyCommand),
    /// Runs the database migrations and exits.
    Migrate(DatabaseArgs),
}

#[derive(Debug, Subcommand)]
pub enum IntegrationKeyCommand {
    /// Creates a key and prints it once.
    Create {
        #[arg(long, default_value = "default")]
        name: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Lists keys (never their secrets).
    List {
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revokes a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// `sqlite://path` (or a bare file path).
    #[arg(
        long,
        env = "SCIMGATE_DATABASE_URL",
        default_value = "sqlite://scimgate.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, env = "SCIMGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The origin used in `scim_base_url` and `meta.location` (default: http://<listen>).
    #[arg(long, env = "SCIMGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[arg(long, env = "SCIMGATE_LOG_FORMAT", value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// An integration key accepted in addition to the stored ones.
    #[arg(
        long = "integration-key",
        env = "SCIMGATE_INTEGRATION_KEY",
        hide_env_values = true
    )]
    pub integration_key: Option<String>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "SCIMGATE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Sustained SCIM requests per second allowed per connection (bursts of twice that).
    #[arg(long, env = "SCIMGATE_SCIM_RATE_LIMIT", default_value_t = 200)]
    pub scim_rate_limit: u32,
    /// Milliseconds a SCIM API key, once read, is trusted without reading it again (0: read it
    /// on every request). Changes made through this process take effect at once; this bounds
    /// how long another process sharing the database takes to see a revoked key or a disabled
    /// connection.
    #[arg(long, env = "SCIMGATE_SCIM_KEY_CACHE_MS", default_value_t = 1000)]
    pub scim_key_cache_ms: u64,
    /// Groups with more members than this answer PATCH without `members` (read them with GET).
    #[arg(
        long,
        env = "SCIMGATE_PATCH_RESPONSE_MEMBER_LIMIT",
        default_value_t = 5000
    )]
    pub patch_response_member_limit: u64,
    /// Days a user deleted through SCIM stays readable (state `deleted`) in the directory API.
    #[arg(
        long,
        env = "SCIMGATE_DELETED_USER_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub deleted_user_retention_days: u32,
    /// Days events stay in the log (`GET /v1/events`) and queued for webhooks.
    #[arg(long, env = "SCIMGATE_EVENT_RETENTION_DAYS", default_value_t = 30)]
    pub event_retention_days: u32,
    /// Days before a SCIM API key expires that `connection.scim_api_key_expiring` is sent.
    #[arg(long, env = "SCIMGATE_KEY_EXPIRY_WARNING_DAYS", default_value_t = 14)]
    pub key_expiry_warning_days: u32,
    /// Seconds a webhook attempt may take, from connecting to the end of the response.
    #[arg(long, env = "SCIMGATE_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,
    /// Milliseconds before the first retry of a failed webhook; each retry doubles it.
    #[arg(long, env = "SCIMGATE_WEBHOOK_BACKOFF_BASE_MS", default_value_t = 5000)]
    pub webhook_backoff_base_ms: u64,
    /// The longest wait between two retries, in seconds.
    #[arg(
        long,
        env = "SCIMGATE_WEBHOOK_BACKOFF_MAX_SECS",
        default_value_t = 3600
    )]
    pub webhook_backoff_max_secs: u64,
    /// Seconds an endpoint may keep failing before it is disabled (default three days).
    #[arg(
        long,
        env = "SCIMGATE_WEBHOOK_RETRY_WINDOW_SECS",
        default_value_t = 259_200
    )]
    pub webhook_retry_window_secs: u64,
}

impl ServeArgs {
    pub fn webhooks(&self) -> crate::webhooks::WebhookSettings {
        use std::time::Duration;
        crate::webhooks::WebhookSettings {
            timeout: Duration::from_secs(self.webhook_timeout_secs.max(1)),
            backoff_base: Duration::from_millis(self.webhook_backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(self.webhook_backoff_max_secs.max(1)),
            retry_window: Duration::from_secs(self.webhook_retry_window_secs),
        }
    }

    pub fn public_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}
