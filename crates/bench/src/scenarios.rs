//! The identity provider's side: an Entra/Okta-style initial sync, lookups, paging, a large
//! group and churn, each a timed scenario whose every response is checked.

use std::sync::{Arc, OnceLock};

use rand::Rng;
use serde_json::{json, Value};

use crate::ceilings::{AnswerOnly, Ceiling, Measured, Yardstick};
use crate::driver::{self, expect, Stats};
use crate::process::Scimgate;
use crate::{Args, BenchError};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Tells this run's users from the ceilings' people.
const RUN: &str = "b";

pub fn user_name(i: u64, run: &str) -> String {
    format!("{run}.user{i}@bench.example")
}

/// A user as Entra ID sends it: names, emails, phone, the enterprise extension with a manager.
pub fn user_body(i: u64, run: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": format!("{run}-ext-{i}"),
        "userName": user_name(i, run),
        "active": true,
        "displayName": format!("Bench User {i}"),
        "name": {"givenName": "Bench", "familyName": format!("User{i}"), "formatted": format!("Bench User{i}")},
        "emails": [{"value": user_name(i, run), "type": "work", "primary": true}],
        "phoneNumbers": [{"value": format!("+1 555 {:07}", i), "type": "work"}],
        "title": "Engineer",
        ENTERPRISE: {
            "employeeNumber": format!("{i}"),
            "department": format!("Department {}", i % 50),
            "manager": {"value": format!("{run}-ext-{}", i / 10)}
        }
    })
}

/// Ids the server gave, by index.
type Ids = Arc<Vec<OnceLock<String>>>;

fn ids(n: u64) -> Ids {
    Arc::new((0..n).map(|_| OnceLock::new()).collect())
}

fn id(ids: &Ids, i: u64) -> Result<String, String> {
    ids.get(i as usize)
        .and_then(|c| c.get().cloned())
        .ok_or_else(|| format!("no id for #{i}: its create failed"))
}

#[derive(Clone)]
struct Idp {
    http: reqwest::Client,
    scim: Arc<String>,
    key: Arc<String>,
}

impl Idp {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.scim))
            .bearer_auth(self.key.as_str())
            .header("content-type", "application/scim+json")
    }
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::GET, path)
    }
    /// `GET /Users?filter=userName eq "…"`, as an IdP asks before it creates.
    async fn find_user(&self, name: &str) -> Result<Value, String> {
        expect(self.get(&lookup_path(name)), 200).await
    }
    /// Finds user `i` by its userName, and checks the answer is that user alone.
    async fn check_lookup(&self, i: u64) -> Result<(), String> {
        let name = user_name(i, RUN);
        let found = self.find_user(&name).await?;
        if found["totalResults"] != 1 || found["Resources"][0]["userName"] != name.as_str() {
            return Err(format!("user {i} not found by userName"));
        }
        Ok(())
    }
    /// Reads user `i` by its id, and checks the answer is that user.
    async fn check_user(&self, id: &str, i: u64) -> Result<(), String> {
        let user = expect(self.get(&format!("/Users/{id}")), 200).await?;
        if user["id"] != id || user["userName"] != user_name(i, RUN).as_str() {
            return Err(format!("GET /Users/{id} answered another user"));
        }
        Ok(())
    }
    /// The text of a successful GET, as the server sent it.
    async fn answer(&self, path: &str) -> Result<String, BenchError> {
        let response = self.get(path).send().await?.error_for_status()?;
        Ok(response.text().await?)
    }
    /// The same IdP against a server that answers every request with `answer`, at the same
    /// URLs, and that server.
    async fn beside(&self, answer: &str) -> Result<(Idp, AnswerOnly), BenchError> {
        let server = AnswerOnly::start(answer).await?;
        let mut scim = reqwest::Url::parse(&self.scim)
            .map_err(|e| BenchError::Server(format!("the SCIM URL {}: {e}", self.scim)))?;
        scim.set_port(Some(server.addr.port()))
            .map_err(|()| BenchError::Server(format!("the SCIM URL {} has no port", self.scim)))?;
        let idp = Idp {
            http: self.http.clone(),
            scim: Arc::new(scim.as_str().trim_end_matches('/').to_owned()),
            key: self.key.clone(),
        };
        Ok((idp, server))
    }
    /// One PATCH of a group's members, as Entra sends them.
    async fn change_members(&self, gid: &str, op: &str, value: Vec<Value>) -> Result<(), String> {
        let operations = json!([{"op": op, "path": "members", "value": value}]);
        expect(
            self.patch(
                &format!("/Groups/{gid}?excludedAttributes=members"),
                operations,
            ),
            200,
        )
        .await
        .map(|_| ())
    }
    fn patch(&self, path: &str, operations: Value) -> reqwest::RequestBuilder {
        self.request(reqwest::Method::PATCH, path)
            .body(json!({"schemas": [PATCH], "Operations": operations}).to_string())
    }
}

fn lookup_path(name: &str) -> String {
    let filter = encode(&format!("userName eq \"{name}\""));
    format!("/Users?filter={filter}")
}

fn encode(s: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b))
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// What the run measured, and the server's memory around the paging walk.
pub struct Results {
    pub scenarios: Vec<Measured>,
    pub rss_before_paging_kib: Option<u64>,
    pub rss_after_paging_kib: Option<u64>,
}

pub async fn run(args: &Args, server: &Scimgate, ys: &Yardstick) -> Result<Results, BenchError> {
    let idp = Idp {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?,
        scim: Arc::new(server.scim.clone()),
        key: Arc::new(server.key.clone()),
    };
    let (n, g, c) = (args.users, args.groups.max(1), args.concurrency);
    let mut out = Vec::new();
    let users = ids(n);

    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("sync: filter userName, then create user", c, n, move |i| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    let name = user_name(i, RUN);
                    let found = idp.find_user(&name).await?;
                    if found["totalResults"] != 0 {
                        return Err(format!("{name} already exists"));
                    }
                    let created = expect(
                        idp.request(reqwest::Method::POST, "/Users")
                            .body(user_body(i, RUN).to_string()),
                        201,
                    )
                    .await?;
                    let id = created["id"].as_str().ok_or("no id in the created user")?;
                    let _ = users[i as usize].set(id.to_owned());
                    Ok(())
                }
            }),
        )
        .await,
    );

    let groups = ids(g);
    let (i2, g2) = (idp.clone(), groups.clone());
    out.push(ys.around(Ceiling::DurableWrite, driver::run("sync: create group", c, g, move |i| {
            let (idp, groups) = (i2.clone(), g2.clone());
            async move {
                let body = json!({"schemas": [GROUP], "displayName": format!("Bench Group {i}"), "externalId": format!("grp-{i}")});
                let created = expect(idp.request(reqwest::Method::POST, "/Groups").body(body.to_string()), 201).await?;
                let _ = groups[i as usize].set(created["id"].as_str().ok_or("no id")?.to_owned());
                Ok(())
            }
        })).await);

    // User u is in groups (u * M + k) mod G: each group gets about N * M / G members.
    let mut members: Vec<Vec<u64>> = vec![Vec::new(); g as usize];
    for u in 0..n {
        for k in 0..args.memberships {
            members[((u * args.memberships + k) % g) as usize].push(u);
        }
    }
    // Round-robin over the groups, as an IdP syncing many groups does: consecutive requests
    // change different groups instead of queueing on one.
    let chunked: Vec<Vec<&[u64]>> = members.iter().map(|m| m.chunks(100).collect()).collect();
    let rounds = chunked.iter().map(Vec::len).max().unwrap_or(0);
    let batches: Arc<Vec<(u64, Vec<u64>)>> = Arc::new(
        (0..rounds)
            .flat_map(|r| {
                chunked
                    .iter()
                    .enumerate()
                    .filter_map(move |(group, chunks)| {
                        chunks.get(r).map(|c| (group as u64, c.to_vec()))
                    })
            })
            .collect(),
    );
    let (i2, u2, g2, b2) = (idp.clone(), users.clone(), groups.clone(), batches.clone());
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run(
                "sync: add 100 members per PATCH",
                c,
                batches.len() as u64,
                move |i| {
                    let (idp, users, groups, batches) =
                        (i2.clone(), u2.clone(), g2.clone(), b2.clone());
                    async move {
                        let (group, batch) = &batches[i as usize];
                        let value: Vec<Value> = batch
                            .iter()
                            .map(|u| id(&users, *u).map(|id| json!({"value": id})))
                            .collect::<Result<_, _>>()?;
                        let gid = id(&groups, *group)?;
                        idp.change_members(&gid, "add", value).await
                    }
                },
            ),
        )
        .await,
    );

    let lookups = n.min(20_000);
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::Http,
            driver::run("lookup: filter userName eq", c, lookups, move |_| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    let i = rand::thread_rng().gen_range(0..users.len() as u64);
                    idp.check_lookup(i).await
                }
            }),
        )
        .await,
    );
    out.push(
        answer_only(
            "reference: answer-only, filtered lookup",
            (&idp, &lookup_path(&user_name(0, RUN))),
            ys,
            c,
            lookups,
            |bare| async move { bare.check_lookup(0).await },
        )
        .await?,
    );
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::Http,
            driver::run("lookup: GET user by id", c, lookups, move |_| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    let i = rand::thread_rng().gen_range(0..users.len() as u64);
                    idp.check_user(&id(&users, i)?, i).await
                }
            }),
        )
        .await,
    );
    let first = id(&users, 0).map_err(BenchError::Server)?;
    out.push(
        answer_only(
            "reference: answer-only, GET user by id",
            (&idp, &format!("/Users/{first}")),
            ys,
            c,
            lookups,
            move |bare| {
                let first = first.clone();
                async move { bare.check_user(&first, 0).await }
            },
        )
        .await?,
    );
    let (i2, g2) = (idp.clone(), groups.clone());
    out.push(ys.around(Ceiling::Http, driver::run(
            "lookup: GET group, excludedAttributes=members",
            c,
            lookups,
            move |_| {
                let (idp, groups) = (i2.clone(), g2.clone());
                async move {
                    let i = rand::thread_rng().gen_range(0..groups.len() as u64);
                    let id = id(&groups, i)?;
                    let group = expect(
                        idp.get(&format!("/Groups/{id}?excludedAttributes=members")),
                        200,
                    )
                    .await?;
                    if group["id"] != id.as_str() || group.get("members").is_some() {
                        return Err(format!(
                            "GET /Groups/{id}?excludedAttributes=members answered another group, or its members"
                        ));
                    }
                    Ok(())
                }
            },
        )).await);

    let rss_before_paging_kib = server.rss_kib();
    out.push(ys.around(Ceiling::Http, walk(&idp, n, false)).await);
    out.push(ys.around(Ceiling::Http, walk(&idp, n, true)).await);
    let rss_after_paging_kib = server.rss_kib();

    out.extend(large_group(&idp, &users, args.large_group.min(n), ys).await?);

    let churn = n.min(5_000);
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(ys.around(Ceiling::DurableWrite, driver::run("churn: Entra PATCH replace", c, churn, move |i| {
            let (idp, users) = (i2.clone(), u2.clone());
            async move {
                let ops = json!([{"op": "Replace", "path": "displayName", "value": format!("Renamed {i}")}, {"op": "Replace", "path": "title", "value": "Staff Engineer"}]);
                expect(idp.patch(&format!("/Users/{}", id(&users, i)?), ops), 200).await.map(|_| ())
            }
        })).await);
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("churn: Okta PUT", c, churn, move |i| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    let mut body = user_body(i, RUN);
                    body["name"]["familyName"] = json!(format!("Changed{i}"));
                    expect(
                        idp.request(reqwest::Method::PUT, &format!("/Users/{}", id(&users, i)?))
                            .body(body.to_string()),
                        200,
                    )
                    .await
                    .map(|_| ())
                }
            }),
        )
        .await,
    );
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("churn: deactivate", c, churn, move |i| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    expect(
                        idp.patch(
                            &format!("/Users/{}", id(&users, i)?),
                            json!([{"op": "replace", "value": {"active": false}}]),
                        ),
                        200,
                    )
                    .await
                    .map(|_| ())
                }
            }),
        )
        .await,
    );
    let (i2, u2, g2) = (idp.clone(), users.clone(), groups.clone());
    let memberships = args.memberships.max(1);
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("churn: remove member by filter", c, churn, move |i| {
                let (idp, users, groups) = (i2.clone(), u2.clone(), g2.clone());
                async move {
                    let group = id(&groups, (i * memberships) % groups.len() as u64)?;
                    let path = format!("members[value eq \"{}\"]", id(&users, i)?);
                    expect(
                        idp.patch(
                            &format!("/Groups/{group}?excludedAttributes=members"),
                            json!([{"op": "remove", "path": path}]),
                        ),
                        200,
                    )
                    .await
                    .map(|_| ())
                }
            }),
        )
        .await,
    );
    let (i2, u2) = (idp.clone(), users.clone());
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("churn: delete user", c, churn, move |i| {
                let (idp, users) = (i2.clone(), u2.clone());
                async move {
                    expect(
                        idp.request(
                            reqwest::Method::DELETE,
                            &format!("/Users/{}", id(&users, i)?),
                        ),
                        204,
                    )
                    .await
                    .map(|_| ())
                }
            }),
        )
        .await,
    );
    // The target is stated for `POST /Users` itself; the sync pairs each create with a lookup.
    // New users past the directory's N, so they change nothing the other scenarios measured.
    let i2 = idp.clone();
    out.push(
        ys.around(
            Ceiling::DurableWrite,
            driver::run("create: POST /Users alone", c, churn, move |i| {
                let idp = i2.clone();
                async move {
                    expect(
                        idp.request(reqwest::Method::POST, "/Users")
                            .body(user_body(n + i, RUN).to_string()),
                        201,
                    )
                    .await
                    .map(|_| ())
                }
            }),
        )
        .await,
    );
    Ok(Results {
        scenarios: out,
        rss_before_paging_kib,
        rss_after_paging_kib,
    })
}

/// `count` requests made by `check` to a server in a process of its own that answers each
/// with the text scimgate answered `idp` at `path`: the most any server could reach with that
/// answer, since the server does no work of its own.
async fn answer_only<F, Fut>(
    name: &str,
    (idp, path): (&Idp, &str),
    ys: &Yardstick,
    concurrency: usize,
    count: u64,
    check: F,
) -> Result<Measured, BenchError>
where
    F: Fn(Idp) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let (bare, server) = idp.beside(&idp.answer(path).await?).await?;
    let _watching = driver::watch_for_a_while(server.pid());
    Ok(ys
        .around(
            Ceiling::Http,
            driver::run(name, concurrency, count, move |_| check(bare.clone())),
        )
        .await)
}

/// One full walk of `/Users`, 100 per page, by index or by cursor; one operation per page.
async fn walk(idp: &Idp, n: u64, cursor: bool) -> Stats {
    let name = if cursor {
        "paging: cursor walk, 100 per page"
    } else {
        "paging: startIndex walk, 100 per page"
    };
    let pages = n.div_ceil(100) + 1;
    let idp = idp.clone();
    let next = Arc::new(std::sync::Mutex::new(if cursor {
        Some(String::new())
    } else {
        None
    }));
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stats = driver::run(name, 1, pages, move |page| {
        let (idp, next, seen) = (idp.clone(), next.clone(), seen.clone());
        async move {
            let path = match next.lock().map_err(|_| "lock")?.clone() {
                Some(c) if c.is_empty() => "/Users?count=100&cursor".to_owned(),
                Some(c) => format!("/Users?count=100&cursor={}", encode(&c)),
                None => format!("/Users?count=100&startIndex={}", page * 100 + 1),
            };
            let body = expect(idp.get(&path), 200).await?;
            let got = body["Resources"].as_array().map_or(0, Vec::len) as u64;
            let total = seen.fetch_add(got, std::sync::atomic::Ordering::Relaxed) + got;
            if cursor {
                let following = body["nextCursor"].as_str().map(str::to_owned);
                if following.is_none() && total < n && page + 1 < pages {
                    return Err(format!("the cursor walk ended after {total} of {n} users"));
                }
                *next.lock().map_err(|_| "lock")? = following;
            }
            Ok(())
        }
    })
    .await;
    stats
}

/// Fills one group with `size` members, then adds and removes 100 at a time, one request at a
/// time (they all change the same group).
async fn large_group(
    idp: &Idp,
    users: &Ids,
    size: u64,
    ys: &Yardstick,
) -> Result<Vec<Measured>, BenchError> {
    let body = json!({"schemas": [GROUP], "displayName": "Bench Large Group"});
    let created = expect(
        idp.request(reqwest::Method::POST, "/Groups")
            .body(body.to_string()),
        201,
    )
    .await
    .map_err(|e| BenchError::Server(format!("creating the large group: {e}")))?;
    let gid = Arc::new(
        created["id"]
            .as_str()
            .ok_or_else(|| BenchError::Server("the large group was created without an id".into()))?
            .to_owned(),
    );
    let (i2, u2, g2) = (idp.clone(), users.clone(), gid.clone());
    let fill = ys
        .around(
            Ceiling::DurableWrite,
            driver::run(
                "large group: fill, 1000 per PATCH",
                1,
                size.div_ceil(1000),
                move |b| {
                    let (idp, users, gid) = (i2.clone(), u2.clone(), g2.clone());
                    async move {
                        let value: Vec<Value> = (b * 1000..((b + 1) * 1000).min(size))
                            .map(|u| id(&users, u).map(|id| json!({"value": id})))
                            .collect::<Result<_, _>>()?;
                        idp.change_members(&gid, "add", value).await
                    }
                },
            ),
        )
        .await;
    // Enough rounds that p99 is not simply the slowest one.
    let rounds = 200u64.min(size / 100);
    let batch = |round: u64| -> Result<Vec<Value>, String> {
        (round * 100..round * 100 + 100)
            .map(|u| id(users, u).map(|id| json!({"value": id})))
            .collect()
    };
    let batches: Arc<Vec<Vec<Value>>> =
        Arc::new((0..rounds).filter_map(|r| batch(r).ok()).collect());
    // The same 100 members are taken out and put back, round after round.
    let rounds = |op: &'static str, name: &'static str| {
        let (i2, b2, g2) = (idp.clone(), batches.clone(), gid.clone());
        ys.around(
            Ceiling::DurableWrite,
            driver::run(name, 1, batches.len() as u64, move |r| {
                let (idp, batches, gid) = (i2.clone(), b2.clone(), g2.clone());
                async move {
                    idp.change_members(&gid, op, batches[r as usize].clone())
                        .await
                }
            }),
        )
    };
    let remove = rounds("remove", "large group: remove 100 members").await;
    let add = rounds("add", "large group: add 100 members").await;
    Ok(vec![fill, remove, add])
}
