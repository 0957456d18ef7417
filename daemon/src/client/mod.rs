//! The client commands (`probemesh workers …`): thin wrappers over the admin API that
//! print readable tables, or the API's JSON with `--json`.

pub mod check;
mod table;
mod watch;

use crate::cli::{ClientArgs, SpecArgs, WorkersCommand};
use anyhow::{Context, anyhow};
use probemesh_gossip::model::WorkerUrl;
use serde_json::{Map, Value, json};
use std::process::ExitCode;

/// Runs one workers command; exit code 0 on success, 1 on an API or connection error.
pub fn run(args: ClientArgs, cmd: WorkersCommand) -> ExitCode {
    // A worker given by URL is checked here: a malformed one is bad usage (exit 2), not
    // an API error.
    if let WorkersCommand::Get { id }
    | WorkersCommand::Update { id, .. }
    | WorkersCommand::Remove { id, .. } = &cmd
        && let Err(e) = id_of(id)
    {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    if let WorkersCommand::Update { spec, .. } = &cmd
        && spec_json(spec).is_empty()
    {
        eprintln!(
            "error: nothing to update: give at least one field, e.g. --label k=v or --priority 10"
        );
        return ExitCode::from(2);
    }
    block_on(execute(&args, cmd))
}

/// Runs a client future on a small runtime: exit 0 on success, 1 (message on stderr) on
/// an API or connection error.
fn block_on(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the client runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(fut) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Runs `probemesh members`.
pub fn run_members(args: ClientArgs) -> ExitCode {
    block_on(async {
        let api = Api::new(&args)?;
        let v = api.call(reqwest::Method::GET, "/v1/members", None).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", table::members(&v));
        }
        Ok(())
    })
}

pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) token: Option<String>,
    pub(crate) http: reqwest::Client,
}

impl Api {
    fn new(args: &ClientArgs) -> anyhow::Result<Api> {
        Ok(Api {
            base: args.admin.trim_end_matches('/').to_string(),
            token: args.token.clone().filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .context("building the HTTP client")?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| {
            format!(
                "cannot reach the agent at {}; is it running? (set --admin or PROBEMESH_ADMIN)",
                self.base
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.context("reading the agent's answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let code = value
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("HTTP_ERROR");
        let message = value
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_string);
        Err(anyhow!("{} {code}: {message}", status.as_u16()))
    }
}

/// Accepts an id or a URL (whose id is derived the same way the agent derives it).
fn id_of(raw: &str) -> anyhow::Result<String> {
    if raw.contains("://") {
        Ok(WorkerUrl::parse(raw)?.id().to_string())
    } else {
        Ok(raw.to_string())
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn execute(args: &ClientArgs, cmd: WorkersCommand) -> anyhow::Result<()> {
    let api = Api {
        base: args.admin.trim_end_matches('/').to_string(),
        token: args.token.clone().filter(|t| !t.is_empty()),
        http: reqwest::Client::builder()
            .no_proxy()
            .build()
            .context("building the HTTP client")?,
    };
    let print_json =
        |v: &Value| println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    match cmd {
        WorkersCommand::List { status, model } => {
            let mut q = Vec::new();
            if let Some(s) = status {
                q.push(format!("status={}", enc(&s)));
            }
            if let Some(m) = model {
                q.push(format!("model={}", enc(&m)));
            }
            let path = if q.is_empty() {
                "/v1/workers".to_string()
            } else {
                format!("/v1/workers?{}", q.join("&"))
            };
            let v = api.call(reqwest::Method::GET, &path, None).await?;
            if args.json {
                print_json(&v);
            } else {
                print!("{}", table::workers(&v));
            }
        }
        WorkersCommand::Get { id } => {
            let v = api
                .call(
                    reqwest::Method::GET,
                    &format!("/v1/workers/{}", enc(&id_of(&id)?)),
                    None,
                )
                .await?;
            if args.json {
                print_json(&v);
            } else {
                print!("{}", table::worker_detail(&v));
            }
        }
        WorkersCommand::Add { url, spec } => {
            let mut body = spec_json(&spec);
            body.insert("url".into(), json!(url));
            let v = api
                .call(
                    reqwest::Method::POST,
                    "/v1/workers",
                    Some(Value::Object(body)),
                )
                .await?;
            print_worker(args.json, "registered", &v);
        }
        WorkersCommand::Update { id, spec } => {
            let body = spec_json(&spec);
            if body.is_empty() {
                return Err(anyhow!(
                    "nothing to update: give at least one field, e.g. --label k=v or --priority 10"
                ));
            }
            let path = format!("/v1/workers/{}", enc(&id_of(&id)?));
            let v = api
                .call(reqwest::Method::PATCH, &path, Some(Value::Object(body)))
                .await?;
            print_worker(args.json, "updated", &v);
        }
        WorkersCommand::Watch => watch::run(&api, args.json).await?,
        WorkersCommand::Remove { id, drain } => {
            let mut path = format!("/v1/workers/{}", enc(&id_of(&id)?));
            if let Some(d) = drain.filter(|d| !d.is_zero()) {
                // The API's duration form: whole milliseconds.
                path.push_str(&format!("?drain={}ms", d.as_millis()));
            }
            let v = api.call(reqwest::Method::DELETE, &path, None).await?;
            if args.json {
                print_json(&v);
            } else if v["tombstoned"] == true {
                println!(
                    "removed {} generation {} (tombstoned cluster-wide)",
                    s(&v, "id"),
                    v["generation"]
                );
            } else {
                println!(
                    "draining {} generation {} on every node until {}; tombstoned then",
                    s(&v, "id"),
                    v["generation"],
                    s(&v, "drain_ends_at")
                );
            }
        }
    }
    Ok(())
}

/// Prints a worker the API returned: JSON with `--json`, else one line.
fn print_worker(json: bool, verb: &str, v: &Value) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        println!(
            "{verb} {} {} (status {})",
            s(v, "id"),
            s(v, "url"),
            s(v, "status")
        );
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn spec_json(a: &SpecArgs) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(v) = &a.model_id {
        m.insert("model_id".into(), json!(v));
    }
    if let Some(v) = &a.worker_type {
        m.insert("worker_type".into(), json!(v));
    }
    if !a.labels.is_empty() {
        let labels: Map<String, Value> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        m.insert("labels".into(), Value::Object(labels));
    }
    if let Some(v) = a.priority {
        m.insert("priority".into(), json!(v));
    }
    if let Some(v) = a.cost {
        m.insert("cost".into(), json!(v));
    }
    if let Some(v) = a.bootstrap_port {
        m.insert("bootstrap_port".into(), json!(v));
    }
    let mut h = Map::new();
    if let Some(v) = &a.health_kind {
        h.insert("kind".into(), json!(v));
    }
    if let Some(v) = &a.health_path {
        h.insert("path".into(), json!(v));
    }
    if let Some(v) = &a.health_interval {
        h.insert("interval".into(), json!(v));
    }
    if let Some(v) = &a.health_timeout {
        h.insert("timeout".into(), json!(v));
    }
    if let Some(v) = a.success_threshold {
        h.insert("success_threshold".into(), json!(v));
    }
    if let Some(v) = a.failure_threshold {
        h.insert("failure_threshold".into(), json!(v));
    }
    if let Some(v) = a.disable_health {
        h.insert("disable".into(), json!(v));
    }
    if !h.is_empty() {
        m.insert("health".into(), Value::Object(h));
    }
    m
}
