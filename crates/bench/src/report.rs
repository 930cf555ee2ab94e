//! The results: a table for people, JSON for tools. Reads are compared with the bare HTTP
//! ceiling, writes with the durable-write ceiling, each as measured around the scenario.

use serde_json::{json, Value};

use crate::ceilings::{Ceilings, Measured};
use crate::driver::Stats;
use crate::scenarios::Results;
use crate::Args;

pub struct Report {
    args: Value,
    ceilings: Vec<Stats>,
    scenarios: Vec<Measured>,
    peak_rss_kib: Option<u64>,
    rss_before_paging_kib: Option<u64>,
    rss_after_paging_kib: Option<u64>,
}

fn ratio(m: &Measured) -> f64 {
    m.stats.per_second() / m.ceiling_per_second.max(1e-9)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Report {
    pub fn new(
        args: &Args,
        ceilings: &Ceilings,
        results: Results,
        peak_rss_kib: Option<u64>,
    ) -> Report {
        Report {
            args: json!({
                "users": args.users, "groups": args.groups, "memberships_per_user": args.memberships,
                "concurrency": args.concurrency, "large_group": args.large_group.min(args.users),
                "database": if args.database == "sqlite" { "sqlite" } else { "postgres" },
            }),
            ceilings: [
                &ceilings.http,
                &ceilings.http_process,
                &ceilings.durable_write,
                &ceilings.sqlx_read,
                &ceilings.sync_read,
            ]
            .into_iter()
            .chain(&ceilings.postgres_read)
            .cloned()
            .collect(),
            scenarios: results.scenarios,
            peak_rss_kib,
            rss_before_paging_kib: results.rss_before_paging_kib,
            rss_after_paging_kib: results.rss_after_paging_kib,
        }
    }

    pub fn ok(&self) -> bool {
        self.scenarios
            .iter()
            .all(|m| m.stats.errors == 0 && m.ceiling_errors == 0)
            && self.ceilings.iter().all(|s| s.errors == 0)
    }

    pub fn print(&self) {
        println!("scimgate-bench {}", self.args);
        println!(
            "{:<46} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7} {:>18} {:>10} {:>9} {:>12} {:>10}",
            "scenario",
            "ops",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "errors",
            "vs ceiling",
            "ceiling/s",
            "CPU busy",
            "server µs/op",
            "tool µs/op"
        );
        let line = |s: &Stats, ratio: String, ceiling: String| {
            println!(
                "{:<46} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7} {:>18} {:>10} {:>9} {:>12} {:>10}",
                s.name,
                s.ops,
                s.per_second(),
                ms(s.percentile(0.5)),
                ms(s.percentile(0.99)),
                ms(s.percentile(1.0)),
                s.errors,
                ratio,
                ceiling,
                s.machine_busy
                    .map_or(String::new(), |b| format!("{:.0} %", b * 100.0)),
                s.server_cpu_per_op_us()
                    .map_or(String::new(), |us| format!("{us:.0}")),
                s.tool_cpu_per_op_us()
                    .map_or(String::new(), |us| format!("{us:.0}"))
            );
            if let Some(e) = &s.first_error {
                println!("    first error: {e}");
            }
        };
        for c in &self.ceilings {
            line(c, String::new(), String::new());
        }
        for m in &self.scenarios {
            line(
                &m.stats,
                format!("{:.2} × {}", ratio(m), m.ceiling.name()),
                format!("{:.0}", m.ceiling_per_second),
            );
            if m.ceiling_errors > 0 {
                println!(
                    "    {} requests to the ceiling around it failed",
                    m.ceiling_errors
                );
            }
        }
        let mib = |k: Option<u64>| {
            k.map_or("n/a".to_owned(), |k| {
                format!("{:.1} MiB", k as f64 / 1024.0)
            })
        };
        println!(
            "initial sync (users, groups, memberships): {:.1} s",
            self.initial_sync_seconds()
        );
        println!(
            "server memory: peak RSS {}; RSS before the paging walks {}, after {}",
            mib(self.peak_rss_kib),
            mib(self.rss_before_paging_kib),
            mib(self.rss_after_paging_kib)
        );
    }

    /// The whole initial sync (users, groups, memberships), in seconds.
    fn initial_sync_seconds(&self) -> f64 {
        self.scenarios
            .iter()
            .filter(|m| m.stats.name.starts_with("sync"))
            .map(|m| m.stats.elapsed.as_secs_f64())
            .sum()
    }

    pub fn json(&self) -> String {
        let stats = |s: &Stats| {
            json!({
                "name": s.name, "ops": s.ops, "errors": s.errors, "first_error": s.first_error,
                "seconds": s.elapsed.as_secs_f64(), "per_second": s.per_second(),
                "p50_ms": ms(s.percentile(0.5)), "p99_ms": ms(s.percentile(0.99)), "max_ms": ms(s.percentile(1.0)),
                "machine_cpu_busy": s.machine_busy, "server_cpu_us_per_op": s.server_cpu_per_op_us(),
                "tool_cpu_us_per_op": s.tool_cpu_per_op_us(),
            })
        };
        let scenarios: Vec<Value> = self
            .scenarios
            .iter()
            .map(|m| {
                let mut v = stats(&m.stats);
                v["ceiling"] = json!(m.ceiling.name());
                v["ceiling_per_second"] = json!(m.ceiling_per_second);
                v["ceiling_errors"] = json!(m.ceiling_errors);
                v["ratio_to_ceiling"] = json!(ratio(m));
                v
            })
            .collect();
        let body = json!({
            "args": self.args,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "ceilings": self.ceilings.iter().map(stats).collect::<Vec<_>>(),
            "scenarios": scenarios,
            "initial_sync_seconds": self.initial_sync_seconds(),
            "server_peak_rss_kib": self.peak_rss_kib,
            "server_rss_before_paging_kib": self.rss_before_paging_kib,
            "server_rss_after_paging_kib": self.rss_after_paging_kib,
        });
        serde_json::to_string_pretty(&body).unwrap_or_default()
    }
}
