//! The scimgate under test: the real binary, started on a free port with a fresh database, so
//! its memory can be read from /proc.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::{Args, BenchError};

pub struct Scimgate {
    child: Child,
    /// The SCIM base URL of the connection the scenarios use.
    pub scim: String,
    pub key: String,
    _dir: tempfile::TempDir,
}

impl Drop for Scimgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary(args: &Args) -> Result<PathBuf, BenchError> {
    if let Some(path) = &args.scimgate {
        return Ok(path.clone());
    }
    let beside = std::env::current_exe()?.with_file_name("scimgate");
    if beside.exists() {
        Ok(beside)
    } else {
        Err(BenchError::Server(format!(
            "no scimgate binary at {}; build it (cargo build --release) or pass --scimgate",
            beside.display()
        )))
    }
}

impl Scimgate {
    pub async fn start(args: &Args) -> Result<Scimgate, BenchError> {
        let dir = tempfile::tempdir()?;
        let database = if args.database == "sqlite" {
            format!("sqlite://{}", dir.path().join("bench.db").display())
        } else {
            args.database.clone()
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let integration_key = "sgi_bench-integration-key";
        let child = Command::new(binary(args)?)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--database-url",
                &database,
            ])
            .args(["--scim-rate-limit", "0", "--log-format", "json"])
            .env("SCIMGATE_INTEGRATION_KEY", integration_key)
            // The caller's RUST_LOG, if any, reaches the server: `sqlx::query=debug` logs every
            // statement with its time, which is how slow statements are found.
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stderr(Stdio::null())
            .stdout(match &args.server_log {
                Some(path) => Stdio::from(std::fs::File::create(path)?),
                None => Stdio::null(),
            })
            .spawn()?;
        crate::driver::watch_server(child.id());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
        {
            if Instant::now() > deadline {
                return Err(BenchError::Server(
                    "did not answer /healthz within 60 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let created: serde_json::Value = client
            .post(format!("{base}/v1/connections"))
            .bearer_auth(integration_key)
            .json(&json!({"customer_id": "bench", "identity_provider": "entra_id"}))
            .send()
            .await?
            .json()
            .await?;
        let scim = created["scim_base_url"]
            .as_str()
            .ok_or_else(|| BenchError::Server(format!("creating the connection: {created}")))?
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Scimgate {
            child,
            key: created["scim_api_key"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            scim,
            _dir: dir,
        })
    }

    fn status_field(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with(field))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// The server's resident memory now, in KiB (Linux).
    pub fn rss_kib(&self) -> Option<u64> {
        self.status_field("VmRSS:")
    }

    /// The most resident memory the server has had, in KiB (Linux).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.status_field("VmHWM:")
    }
}
