//! `scimgate-bench`: plays an identity provider against scimgate (one it starts on a temporary
//! database, or one already running) and reports each scenario beside the ceilings of this
//! machine, measured in the same run.

mod ceilings;
mod driver;
mod process;
mod report;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "scimgate-bench", about)]
pub struct Args {
    /// Users in the initial sync.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Groups in the initial sync.
    #[arg(long, default_value_t = 1_000)]
    groups: u64,
    /// Group memberships per user.
    #[arg(long, default_value_t = 10)]
    memberships: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Members of the large group (at most `--users`).
    #[arg(long, default_value_t = 50_000)]
    large_group: u64,
    /// The database of the scimgate this tool starts: `sqlite` (a temporary file) or a
    /// `postgres://` URL of an empty database.
    #[arg(long, default_value = "sqlite")]
    database: String,
    /// The scimgate binary to start (default: `scimgate` beside this binary).
    #[arg(long)]
    scimgate: Option<PathBuf>,
    /// Also write the results here, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the server's log (warnings and errors) in this file.
    #[arg(long)]
    server_log: Option<PathBuf>,
    /// Serve the bare HTTP ceiling's answer and print the address: the tool starts itself so
    /// to measure what a bare server costs in a process of its own.
    #[arg(long, hide = true)]
    serve_bare_http: bool,
    /// Serve this file's text as the answer to every request and print the address: the
    /// answer-only references run so, in a process of their own.
    #[arg(long, hide = true)]
    serve_answer_only: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let own_server = if args.serve_bare_http {
        Some(ceilings::serve_bare_http().await)
    } else if let Some(file) = &args.serve_answer_only {
        Some(ceilings::serve_answer_only(file).await)
    } else {
        None
    };
    if let Some(served) = own_server {
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("scimgate-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("scimgate-bench: some requests failed; the figures above are not valid");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("scimgate-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the scimgate under test: {0}")]
    Server(String),
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("ceiling server: {0}")]
    Ceiling(#[from] sqlx::Error),
}

async fn run(args: Args) -> Result<bool, BenchError> {
    let ceilings = ceilings::measure(args.concurrency, &args.database).await?;
    let server = process::Scimgate::start(&args).await?;
    let results = scenarios::run(&args, &server, &ceilings.yardstick).await?;
    let report = report::Report::new(&args, &ceilings, results, server.peak_rss_kib());
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, report.json())?;
    }
    Ok(report.ok())
}
