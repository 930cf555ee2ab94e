//! The `scimgate` commands.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use scimgate_store::Store;

use crate::app::{shutdown_signal, Server, Settings};
use crate::config::{Cli, Command, DatabaseArgs, IntegrationKeyCommand, LogFormat, ServeArgs};
use crate::secrets;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("cannot open the database: {0}")]
    Store(#[from] scimgate_store::StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no integration key with id '{0}' (or it is already revoked)")]
    UnknownKey(String),
}

/// The public URL for commands that run without a server; nothing they write emits events.
const OFFLINE: &str = "";

/// Opens the store; `public_url` goes into the connection URLs that events carry.
pub async fn open_store(db: &DatabaseArgs, public_url: &str) -> Result<Arc<dyn Store>, CliError> {
    let events = Arc::new(crate::events::Describer::new(public_url));
    Ok(scimgate_store::open(&db.database_url, events).await?)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

async fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_logging(args.log_format);
    let store = open_store(&args.db, &args.public_url()).await?;
    if args.integration_key.is_none()
        && store
            .integration_keys()
            .await?
            .iter()
            .all(|k| k.revoked_at.is_some())
    {
        let key = secrets::new_integration_key();
        store
            .create_integration_key("initial", &secrets::hash(&key))
            .await?;
        println!("No integration key existed, so one was created. It is shown only this once:\n\n    {key}\n");
        println!("Send it as 'Authorization: Bearer <key>' to /v1. Create more with `scimgate integration-keys create`,");
        println!("or set SCIMGATE_INTEGRATION_KEY for deployments.\n");
    }
    let settings = Settings {
        public_url: args.public_url(),
        integration_key: args.integration_key.clone(),
        max_body_bytes: args.max_body_bytes,
        scim_rate_limit: args.scim_rate_limit,
        scim_key_cache_ttl: std::time::Duration::from_millis(args.scim_key_cache_ms),
        patch_response_member_limit: args.patch_response_member_limit,
        deleted_user_retention_days: args.deleted_user_retention_days,
        event_retention_days: args.event_retention_days,
        key_expiry_warning_days: args.key_expiry_warning_days,
        webhooks: args.webhooks(),
    };
    let server = Server::bind(store, args.listen, settings).await?;
    tracing::info!(address = %server.local_addr()?, public_url = %args.public_url(), "scimgate is listening");
    server.run(shutdown_signal()).await?;
    Ok(())
}

async fn integration_keys(command: IntegrationKeyCommand) -> Result<(), CliError> {
    match command {
        IntegrationKeyCommand::Create { name, db } => {
            let store = open_store(&db, OFFLINE).await?;
            let key = secrets::new_integration_key();
            let record = store
                .create_integration_key(&name, &secrets::hash(&key))
                .await?;
            println!("{key}");
            eprintln!(
                "integration key '{}' created (id {}); it is shown only this once",
                record.name, record.id
            );
        }
        IntegrationKeyCommand::List { db } => {
            let store = open_store(&db, OFFLINE).await?;
            for key in store.integration_keys().await? {
                let state = match key.revoked_at {
                    Some(_) => "revoked",
                    None => "active",
                };
                println!("{}\t{}\t{}\t{state}", key.id, key.name, key.created_at);
            }
        }
        IntegrationKeyCommand::Revoke { id, db } => {
            let store = open_store(&db, OFFLINE).await?;
            if !store.revoke_integration_key(&id).await? {
                return Err(CliError::UnknownKey(id));
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scimgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::IntegrationKeys(command) => integration_keys(command).await,
            Command::Migrate(db) => open_store(&db, OFFLINE)
                .await
                .map(|_| println!("migrations applied")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scimgate: {e}");
            ExitCode::FAILURE
        }
    }
}
