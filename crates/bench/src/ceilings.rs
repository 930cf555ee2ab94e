//! This machine's ceilings, measured with the same client and concurrency as the scenarios:
//! a bare HTTP server answering a SCIM-sized JSON body (nothing can serve faster), and a bare
//! server that stores each request body in SQLite in its own durable transaction (one fsync
//! per request: what a naive durable create costs). A third, for reference: a bare server that
//! answers each GET with one indexed read through sqlx's SQLite pool, the floor under any
//! request that reads the database through that driver; the same read made synchronously on
//! the thread that handles the request (rusqlite, a connection per thread), which is what the
//! driver's hand-overs cost beside it; and, when the run is on PostgreSQL, the same through
//! sqlx's PostgreSQL pool, the floor under any PostgreSQL lookup. The two ceilings' servers
//! stay up for the whole run, and each scenario is compared with them as measured again just
//! around it ([`Yardstick`]). For the scenarios' references, a server that only sends back an
//! answer scimgate gave ([`AnswerOnly`]).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::driver::{self, Stats};
use crate::scenarios::{user_body, user_name};
use crate::BenchError;

pub struct Ceilings {
    pub http: Stats,
    pub http_process: Stats,
    pub durable_write: Stats,
    pub sqlx_read: Stats,
    pub sync_read: Stats,
    pub postgres_read: Option<Stats>,
    /// The two ceilings' servers, kept for [`Yardstick::around`].
    pub yardstick: Yardstick,
}

/// Which ceiling a scenario is compared with.
#[derive(Debug, Clone, Copy)]
pub enum Ceiling {
    Http,
    DurableWrite,
}

impl Ceiling {
    pub fn name(self) -> &'static str {
        match self {
            Ceiling::Http => "http",
            Ceiling::DurableWrite => "durable_write",
        }
    }
}

/// A scenario with its ceiling as measured just before and just after it.
pub struct Measured {
    pub stats: Stats,
    pub ceiling: Ceiling,
    /// The mean of the two measurements.
    pub ceiling_per_second: f64,
    /// Failed requests of those measurements (the run is then not valid).
    pub ceiling_errors: u64,
}

/// The ceilings' servers, left running so that each scenario is compared with what the machine
/// allowed while it ran: this machine's speed changes from one minute to the next (by up to
/// 1.75 × between runs minutes apart), so a ceiling measured once, at the start, can be far
/// from the one a scenario saw minutes later.
pub struct Yardstick {
    client: reqwest::Client,
    http_url: Arc<String>,
    write_url: Arc<String>,
    concurrency: usize,
    /// Holds the durable-write ceiling's database.
    _dir: tempfile::TempDir,
}

/// Requests in each measurement beside a scenario: short, so that it is close in time.
const BESIDE_GETS: u64 = 5_000;
const BESIDE_WRITES: u64 = 1_000;

impl Yardstick {
    async fn measure(&self, ceiling: Ceiling) -> Stats {
        match ceiling {
            Ceiling::Http => {
                bare_gets(
                    "ceiling beside a scenario",
                    &self.client,
                    &self.http_url,
                    self.concurrency,
                    BESIDE_GETS,
                )
                .await
            }
            Ceiling::DurableWrite => {
                durable_writes(
                    "ceiling beside a scenario",
                    &self.client,
                    &self.write_url,
                    self.concurrency,
                    BESIDE_WRITES,
                )
                .await
            }
        }
    }

    /// Runs `scenario` between two measurements of `ceiling`.
    pub async fn around(
        &self,
        ceiling: Ceiling,
        scenario: impl std::future::Future<Output = Stats>,
    ) -> Measured {
        let before = self.measure(ceiling).await;
        let stats = scenario.await;
        let after = self.measure(ceiling).await;
        Measured {
            stats,
            ceiling,
            ceiling_per_second: (before.per_second() + after.per_second()) / 2.0,
            ceiling_errors: before.errors + after.errors,
        }
    }
}

const REQUESTS: u64 = 20_000;
const WRITES: u64 = 3_000;
const PEOPLE: u64 = 10_000;
/// The reference's own table in the database the run is given, dropped before scimgate starts
/// on it.
macro_rules! pg_table {
    () => {
        "scimgate_bench_reference"
    };
}
const PG_TABLE: &str = pg_table!();

async fn serve(app: Router) -> Result<SocketAddr, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

async fn store(State(pool): State<SqlitePool>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body).into_owned();
    let result = async {
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO bodies (body) VALUES (?)")
            .bind(text)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => StatusCode::CREATED,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

type Answer = Result<([(&'static str, &'static str); 1], String), StatusCode>;

/// A stored body as a SCIM response, or why there is none.
fn answer<E>(read: Result<Option<String>, E>) -> Answer {
    match read {
        Ok(Some(body)) => Ok(([("content-type", "application/scim+json")], body)),
        Ok(None) => Err(StatusCode::NOT_FOUND),
        Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

async fn lookup(State(pool): State<SqlitePool>, Path(name): Path<String>) -> Answer {
    answer(
        sqlx::query_scalar("SELECT body FROM people WHERE name = ?")
            .bind(name)
            .fetch_optional(&pool)
            .await,
    )
}

thread_local! {
    /// Each of the reference server's threads reads through a connection of its own, so a read
    /// is a call on the thread that handles the request: no hand-over to another thread.
    static SYNC_READER: std::cell::RefCell<Option<(std::path::PathBuf, rusqlite::Connection)>> =
        const { std::cell::RefCell::new(None) };
}

async fn lookup_sync(
    State(path): State<Arc<std::path::PathBuf>>,
    Path(name): Path<String>,
) -> Answer {
    answer(SYNC_READER.with(|cell| {
        let mut slot = cell.borrow_mut();
        // A connection is kept for the file it was opened on only.
        let connection = match slot.as_mut() {
            Some((opened, connection)) if opened == path.as_ref() => connection,
            _ => {
                let connection = rusqlite::Connection::open_with_flags(
                    path.as_path(),
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                &mut slot.insert((path.to_path_buf(), connection)).1
            }
        };
        let mut statement = connection.prepare_cached("SELECT body FROM people WHERE name = ?")?;
        let mut rows = statement.query([name])?;
        match rows.next()? {
            Some(row) => row.get(0).map(Some),
            None => Ok(None),
        }
    }))
}

async fn lookup_postgres(State(pool): State<PgPool>, Path(name): Path<String>) -> Answer {
    answer(
        sqlx::query_scalar(concat!(
            "SELECT body FROM ",
            pg_table!(),
            " WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&pool)
        .await,
    )
}

/// Serves `PEOPLE` bodies by name and reads each of them by a GET, `REQUESTS` times in all.
async fn read_reference(
    name: &'static str,
    app: Router,
    concurrency: usize,
) -> Result<Stats, BenchError> {
    let addr = serve(app).await?;
    let base = Arc::new(format!("http://{addr}/Users"));
    let c = reqwest::Client::new();
    Ok(driver::run(name, concurrency, REQUESTS, move |i| {
        let (c, base) = (c.clone(), base.clone());
        async move {
            let person = i % PEOPLE;
            let user = driver::expect(c.get(format!("{base}/p{person}")), 200).await?;
            if user["userName"] != user_name(person, "ceiling").as_str() {
                return Err(format!("p{person} answered another user"));
            }
            Ok(())
        }
    })
    .await)
}

/// One indexed read per GET through a pool as large as scimgate's on PostgreSQL, on its own
/// table in `url`'s database, which it leaves as it found it.
async fn postgres_read(url: &str, concurrency: usize) -> Result<Stats, BenchError> {
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .connect(url)
        .await?;
    sqlx::query(&format!("DROP TABLE IF EXISTS {PG_TABLE}"))
        .execute(&pool)
        .await?;
    sqlx::query(&format!(
        "CREATE TABLE {PG_TABLE} (name TEXT PRIMARY KEY, body TEXT NOT NULL)"
    ))
    .execute(&pool)
    .await?;
    let measured = async {
        let (names, bodies): (Vec<String>, Vec<String>) = (0..PEOPLE)
            .map(|i| (format!("p{i}"), user_body(i, "ceiling").to_string()))
            .unzip();
        sqlx::query(&format!(
            "INSERT INTO {PG_TABLE} (name, body) SELECT * FROM unnest($1::text[], $2::text[])"
        ))
        .bind(names)
        .bind(bodies)
        .execute(&pool)
        .await?;
        sqlx::query(&format!("ANALYZE {PG_TABLE}"))
            .execute(&pool)
            .await?;
        read_reference(
            "reference: one indexed sqlx PostgreSQL read",
            Router::new()
                .route("/Users/{name}", get(lookup_postgres))
                .with_state(pool.clone()),
            concurrency,
        )
        .await
    }
    .await;
    sqlx::query(&format!("DROP TABLE {PG_TABLE}"))
        .execute(&pool)
        .await?;
    pool.close().await;
    measured
}

/// A bare server that answers every request with `body`, as scimgate answers (status 200,
/// `application/scim+json`).
fn answer_only(body: String) -> Router {
    let body: &'static str = Box::leak(body.into_boxed_str());
    Router::new()
        .fallback(move || async move { ([("content-type", "application/scim+json")], body) })
}

/// [`answer_only`] with the text of `file`, until killed, after printing its address on the
/// first line.
pub async fn serve_answer_only(file: &std::path::Path) -> Result<(), BenchError> {
    serve_until_killed(answer_only(std::fs::read_to_string(file)?)).await
}

/// Serves `app` after printing its address on the first line, for [`start_self`].
async fn serve_until_killed(app: Router) -> Result<(), BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

/// [`answer_only`] in a process of its own, as scimgate runs: a client sent to it does all of
/// its own work for a request and the server none of its own, so its throughput is the most
/// any server could reach with that answer.
pub struct AnswerOnly {
    pub addr: SocketAddr,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl AnswerOnly {
    pub async fn start(body: &str) -> Result<AnswerOnly, BenchError> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("answer.json");
        std::fs::write(&file, body)?;
        let (child, addr) = start_self(&[
            std::ffi::OsStr::new("--serve-answer-only"),
            file.as_os_str(),
        ])
        .await?;
        Ok(AnswerOnly {
            addr,
            child,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

/// This tool started again with `args`, as a server that prints its address on its first
/// line; it is killed when the handle is dropped.
async fn start_self(
    args: &[&std::ffi::OsStr],
) -> Result<(tokio::process::Child, SocketAddr), BenchError> {
    use tokio::io::AsyncBufReadExt;

    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut first_line = String::new();
    if let Some(stdout) = child.stdout.take() {
        tokio::io::BufReader::new(stdout)
            .read_line(&mut first_line)
            .await?;
    }
    let addr: SocketAddr = first_line.trim().parse().map_err(|_| {
        BenchError::Server(format!(
            "the tool's own server ({args:?}) printed no address: {first_line:?}"
        ))
    })?;
    Ok((child, addr))
}

/// The HTTP ceiling's server: a fixed SCIM user (about 1 KB) for every GET.
fn bare_http() -> Router {
    let body: &'static str = Box::leak(user_body(0, "ceiling").to_string().into_boxed_str());
    Router::new().route(
        "/Users/x",
        get(move || async move { ([("content-type", "application/scim+json")], body) }),
    )
}

fn bare_url(addr: SocketAddr) -> String {
    format!("http://{addr}/Users/x")
}

async fn bare_gets(
    name: &str,
    client: &reqwest::Client,
    url: &Arc<String>,
    concurrency: usize,
    count: u64,
) -> Stats {
    let (c, url) = (client.clone(), url.clone());
    let expected = Arc::new(user_name(0, "ceiling"));
    driver::run(name, concurrency, count, move |_| {
        let (c, url, expected) = (c.clone(), url.clone(), expected.clone());
        async move {
            let user = driver::expect(c.get(url.as_str()), 200).await?;
            if user["userName"] != expected.as_str() {
                return Err("the bare server answered another user".to_owned());
            }
            Ok(())
        }
    })
    .await
}

/// `count` POSTs to the durable-write ceiling's server.
async fn durable_writes(
    name: &str,
    client: &reqwest::Client,
    url: &Arc<String>,
    concurrency: usize,
    count: u64,
) -> Stats {
    let (c, url) = (client.clone(), url.clone());
    driver::run(name, concurrency, count, move |i| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let body = user_body(i, "ceiling").to_string();
            driver::expect(c.post(url.as_str()).body(body), 201)
                .await
                .map(|_| ())
        }
    })
    .await
}

/// Serves [`bare_http`] until killed, after printing its address on the first line.
pub async fn serve_bare_http() -> Result<(), BenchError> {
    serve_until_killed(bare_http()).await
}

/// The same bare server in a process of its own, as scimgate runs, so that its CPU time is
/// measured apart from the client's: what answering a GET costs a server that does nothing
/// else.
async fn bare_http_process(
    client: &reqwest::Client,
    concurrency: usize,
) -> Result<Stats, BenchError> {
    let (mut child, addr) = start_self(&[std::ffi::OsStr::new("--serve-bare-http")]).await?;
    let stats = {
        let _watching = driver::watch_for_a_while(child.id().unwrap_or(0));
        bare_gets(
            "reference: bare HTTP GET, own process",
            client,
            &Arc::new(bare_url(addr)),
            concurrency,
            REQUESTS,
        )
        .await
    };
    child.kill().await?;
    Ok(stats)
}

/// `database` is the run's: a `postgres://` URL adds the PostgreSQL read reference.
pub async fn measure(concurrency: usize, database: &str) -> Result<Ceilings, BenchError> {
    let http_url = Arc::new(bare_url(serve(bare_http()).await?));
    let client = reqwest::Client::new();
    let http = bare_gets(
        "ceiling: bare HTTP GET",
        &client,
        &http_url,
        concurrency,
        REQUESTS,
    )
    .await;
    let http_process = bare_http_process(&client, concurrency).await?;

    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::from_str(&format!(
        "sqlite://{}",
        dir.path().join("ceiling.db").display()
    ))?
    .create_if_missing(true)
    .journal_mode(SqliteJournalMode::Wal)
    .synchronous(SqliteSynchronous::Full);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.clone())
        .await?;
    sqlx::query("CREATE TABLE bodies (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let write_addr = serve(
        Router::new()
            .route("/Users", post(store))
            .with_state(pool.clone()),
    )
    .await?;
    let write_url = Arc::new(format!("http://{write_addr}/Users"));
    let durable_write = durable_writes(
        "ceiling: durable SQLite insert",
        &client,
        &write_url,
        concurrency,
        WRITES,
    )
    .await;

    let mut tx = pool.begin().await?;
    sqlx::query("CREATE TABLE people (name TEXT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&mut *tx)
        .await?;
    for i in 0..PEOPLE {
        sqlx::query("INSERT INTO people (name, body) VALUES (?, ?)")
            .bind(format!("p{i}"))
            .bind(user_body(i, "ceiling").to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    // As scimgate reads: a pool of read-only connections, not checked on every acquire.
    let readers = SqlitePoolOptions::new()
        .max_connections(8)
        .test_before_acquire(false)
        .connect_with(options.read_only(true))
        .await?;
    let sqlx_read = read_reference(
        "reference: one indexed sqlx SQLite read",
        Router::new()
            .route("/Users/{name}", get(lookup))
            .with_state(readers),
        concurrency,
    )
    .await?;
    let sync_read = read_reference(
        "reference: one indexed synchronous SQLite read",
        Router::new()
            .route("/Users/{name}", get(lookup_sync))
            .with_state(Arc::new(dir.path().join("ceiling.db"))),
        concurrency,
    )
    .await?;
    let postgres_read = if database.starts_with("postgres") {
        Some(postgres_read(database, concurrency).await?)
    } else {
        None
    };
    Ok(Ceilings {
        http,
        http_process,
        durable_write,
        sqlx_read,
        sync_read,
        postgres_read,
        yardstick: Yardstick {
            client,
            http_url,
            write_url,
            concurrency,
            _dir: dir,
        },
    })
}
