//! Concurrent writers on two instances of one `bbru-zeo`: 4 clients create pages in one
//! folder as fast as they are answered, and 4 clients edit a page each, their requests
//! alternating between the two instances, for a while.  No edit may fail, no request
//! may get a 5xx, and every change a client was told succeeded is there afterwards, on
//! both instances.  Creations may rarely be answered 409 (at most 2% of them): each
//! also writes the search index, whose postings buckets every creation of this test
//! shares (all its pages have the same words). A change beside a concurrent split of
//! its bucket merges when its keys stay below what the split kept, and splits of
//! different buckets merge (`resolve_tree`), but two splits of one bucket, or an insert
//! into the half a split moved, merge with nothing; each instance's requests that kept
//! conflicting take turns (`CONFLICT_TURNS_AFTER`), yet under this burst a creation can
//! still lose all its attempts (0 to 2 of 250-450 per run).
//!
//! The run lasts `BBRU_CONCURRENT_WRITERS_SECONDS` seconds, 15 by default to keep CI
//! short; the acceptance run is a minute:
//! `BBRU_CONCURRENT_WRITERS_SECONDS=60 cargo test -p bbru --test instances concurrent -- --nocapture`
//! (the counts are printed).  How fast it goes is measured in `bench/web/create.sh`, not
//! here.
//!
//! A merged commit starts a new two-phase commit for each resolution round (`zodb::DB`'s
//! commit path), so when every creator writes the folder's one bucket a commit can lose
//! several rounds to other clients' commits; with 10 rounds allowed a third to half of
//! the runs saw one 409, which is why the limit
//! (`zodb::limits::CONFLICT_RESOLUTION_ROUNDS_MAX`) is 50.
//!
//! The instances run with `conflict_retries = 8` (the default is Zope's 3).  What still
//! conflicts after resolution is what no merge can settle from one object's states:
//! two splits of one bucket, or an insert into the half a split moved to a new bucket.
//! Creators writing as fast as they are answered split a bucket every few dozen
//! creations, and with 3 retries about one run of 15 s in 7 saw one request lose all
//! four attempts to such splits (logged "still conflicting after every attempt",
//! which the test prints).  A site with such a write load raises the
//! setting; this test checks that, retried enough, nothing is ever refused or lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{Value, json};

use super::metric;
use crate::common::{self, ADMIN, Instance, Zeo};

/// The length of the run when `BBRU_CONCURRENT_WRITERS_SECONDS` does not say.
const RUN_DEFAULT: Duration = Duration::from_secs(15);
const CREATORS: usize = 4;
const EDITORS: usize = 4;

/// What went wrong with one request.
struct Failure {
    who: String,
    request: String,
    status: Option<u16>,
    body: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(
                f,
                "{}: {} answered {status}: {}",
                self.who, self.request, self.body
            ),
            None => write!(f, "{}: {} failed: {}", self.who, self.request, self.body),
        }
    }
}

/// What one client did.
#[derive(Default)]
struct Outcome {
    /// Names of the pages a creator was told were created (201).
    created: Vec<String>,
    /// The last body an editor was told was saved (204), and how many saves it made.
    last_saved: Option<String>,
    saves: usize,
    failures: Vec<Failure>,
}

/// A JSON API client with the admin's token.
struct Api {
    http: Client,
    token: String,
}

impl Api {
    /// Logs in on `at` for a token (valid on both instances).
    fn login(at: &Instance) -> Api {
        let http = Self::http();
        let r = http
            .post(at.url("/@login"))
            .json(&json!({"login": ADMIN.0, "password": ADMIN.1}))
            .send()
            .expect("POST /@login");
        assert_eq!(r.status(), 200, "POST /@login");
        let token = r.json::<Value>().expect("JSON")["token"]
            .as_str()
            .expect("a token")
            .to_owned();
        Api { http, token }
    }

    /// A client of its own (its own connections) with the token of `other`.
    fn sharing_token(other: &Api) -> Api {
        Api {
            http: Self::http(),
            token: other.token.clone(),
        }
    }

    fn http() -> Client {
        Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client")
    }

    /// `method path` with `body` on `at`: the status and the body, or the transport error.
    fn call(
        &self,
        at: &Instance,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), String> {
        let mut request = self
            .http
            .request(method, at.url(path))
            .bearer_auth(&self.token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().map_err(|e| e.to_string())?;
        let status = r.status().as_u16();
        Ok((status, r.text().unwrap_or_default()))
    }

    /// GET as JSON, expecting 200.
    fn get(&self, at: &Instance, path: &str) -> Value {
        let (status, body) = self
            .call(at, reqwest::Method::GET, path, None)
            .unwrap_or_else(|e| panic!("GET {}{path}: {e}", at.base));
        assert_eq!(status, 200, "GET {}{path}: {body}", at.base);
        serde_json::from_str(&body).expect("JSON")
    }
}

/// One writer of the run: who it is, the token it uses, where it sends request `n`
/// (`instances[(offset + n) % 2]`), and when it starts (once every client is ready) and
/// for how long.
struct Writer<'a> {
    who: String,
    api: &'a Api,
    instances: [&'a Instance; 2],
    offset: usize,
    start: &'a std::sync::Barrier,
    run: Duration,
}

/// Runs `client`: request `n` is `request(n)`; `acknowledged` records a 2xx answer.
fn run_client(
    client: Writer<'_>,
    mut request: impl FnMut(usize) -> (reqwest::Method, String, Value),
    mut acknowledged: impl FnMut(&mut Outcome, usize, u16),
) -> Outcome {
    let Writer {
        who,
        api,
        instances,
        offset,
        start,
        run,
    } = client;
    let api = Api::sharing_token(api);
    start.wait();
    let until = Instant::now() + run;
    let mut outcome = Outcome::default();
    let mut n = 0;
    while Instant::now() < until {
        let at = instances[(offset + n) % 2];
        let (method, path, body) = request(n);
        let described = format!("{method} {}{path} {body}", at.base);
        match api.call(at, method, &path, Some(&body)) {
            Ok((status, _)) if (200..300).contains(&status) => {
                acknowledged(&mut outcome, n, status);
            }
            Ok((status, body)) => outcome.failures.push(Failure {
                who: who.to_owned(),
                request: described,
                status: Some(status),
                body,
            }),
            Err(e) => outcome.failures.push(Failure {
                who: who.to_owned(),
                request: described,
                status: None,
                body: e,
            }),
        }
        n += 1;
    }
    outcome
}

#[test]
fn concurrent_creators_and_editors_on_two_instances_lose_nothing_and_rarely_conflict() {
    let run = std::env::var("BBRU_CONCURRENT_WRITERS_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(RUN_DEFAULT, Duration::from_secs_f64);
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let site_config = common::write_site_config(root);
    let zeo = Zeo::start(&root.join("Data.fs"));
    // One after the other: the first creates the site (see this binary's main module).
    let start = |name| {
        Instance::start_zeo_configured(
            root,
            name,
            &site_config,
            &zeo.address,
            "conflict_retries = 8",
        )
    };
    let one = start("one");
    let two = start("two");
    let instances = [&one, &two];

    // The folder, and a page for each editor in it.  One login: the clients share its
    // token, so no password is hashed while they run.
    let api = Api::login(&one);
    let create = |path: &str, body: Value| {
        let (status, text) = api
            .call(&one, reqwest::Method::POST, path, Some(&body))
            .expect("POST");
        assert_eq!(status, 201, "POST {path} {body}: {text}");
    };
    create(
        "/",
        json!({"@type": "Folder", "id": "load", "title": "Load"}),
    );
    for e in 0..EDITORS {
        create(
            "/load",
            json!({"@type": "Page", "id": format!("edited-{e}"), "title": format!("Edited {e}"), "body": "version 0"}),
        );
    }

    let start = std::sync::Barrier::new(CREATORS + EDITORS);
    let outcomes: Vec<Outcome> = std::thread::scope(|scope| {
        let mut clients = Vec::new();
        for c in 0..CREATORS {
            let (api, start) = (&api, &start);
            clients.push(scope.spawn(move || {
                let client = Writer {
                    who: format!("creator {c}"),
                    api,
                    instances,
                    offset: c,
                    start,
                    run,
                };
                run_client(
                    client,
                    |n| {
                        (
                            reqwest::Method::POST,
                            "/load".to_owned(),
                            json!({"@type": "Page", "id": format!("c{c}-{n}"), "title": format!("Creation {n} of {c}"), "body": format!("Made by creator {c}.")}),
                        )
                    },
                    |outcome, n, status| {
                        if status == 201 {
                            outcome.created.push(format!("c{c}-{n}"));
                        }
                    },
                )
            }));
        }
        for e in 0..EDITORS {
            let (api, start) = (&api, &start);
            clients.push(scope.spawn(move || {
                let client = Writer {
                    who: format!("editor {e}"),
                    api,
                    instances,
                    offset: e + 1,
                    start,
                    run,
                };
                run_client(
                    client,
                    |n| {
                        (
                            reqwest::Method::PATCH,
                            format!("/load/edited-{e}"),
                            json!({"body": format!("version {}", n + 1)}),
                        )
                    },
                    |outcome, n, _| {
                        outcome.last_saved = Some(format!("version {}", n + 1));
                        outcome.saves += 1;
                    },
                )
            }));
        }
        clients
            .into_iter()
            .map(|c| c.join().expect("a client thread"))
            .collect()
    });

    let failures: Vec<&Failure> = outcomes.iter().flat_map(|o| &o.failures).collect();
    let created: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.created.iter().cloned())
        .collect();
    let saves: usize = outcomes.iter().map(|o| o.saves).sum();
    let [retries, resolved] = ["bbru_conflict_retries", "bbru_conflicts_resolved"]
        .map(|name| instances.iter().map(|i| metric(i, name)).sum::<u64>());
    eprintln!(
        "{run:?}: {} creations, {saves} edits, {} failures; the instances merged {resolved} conflicting changes and ran {retries} requests again",
        created.len(),
        failures.len()
    );
    // Why the instances gave up (the conflicting object and the resolver's reason).
    for instance in instances {
        let log = std::fs::read_to_string(&instance.process.log).unwrap_or_default();
        for line in log.lines().filter(|l| l.contains("still conflicting")) {
            eprintln!("{line}");
        }
    }
    // A creation answered 409 is the index's hot spot; anything else is a failure.
    let (refused_creations, other): (Vec<&&Failure>, Vec<&&Failure>) = failures
        .iter()
        .partition(|f| f.status == Some(409) && f.who.starts_with("creator"));
    let first: Vec<String> = other.iter().take(10).map(ToString::to_string).collect();
    assert!(
        other.is_empty(),
        "{} requests failed; the first ones:\n{}",
        other.len(),
        first.join("\n")
    );
    assert!(
        refused_creations.len() * 50 <= created.len().max(50),
        "{} of {} creations answered 409: {}",
        refused_creations.len(),
        created.len(),
        refused_creations
            .first()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    for (i, o) in outcomes.iter().enumerate() {
        assert!(
            !o.created.is_empty() || o.saves > 0,
            "client {i} got nothing done in {run:?}"
        );
    }

    // Every acknowledged change, on both instances.
    for at in instances {
        let folder = api.get(at, "/load");
        let names: BTreeSet<String> = folder["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["id"].as_str().expect("an id").to_owned())
            .collect();
        let missing: Vec<&String> = created.difference(&names).collect();
        assert!(
            missing.is_empty(),
            "{}: {} acknowledged creations missing, such as {:?}",
            at.base,
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        assert_eq!(
            names.len(),
            created.len() + EDITORS,
            "{}: the folder holds what was created and the edited pages, nothing else",
            at.base
        );
        assert_eq!(folder["items_total"], names.len(), "{}", at.base);
        for (e, o) in outcomes[CREATORS..].iter().enumerate() {
            let page = api.get(at, &format!("/load/edited-{e}"));
            let expected = o.last_saved.as_deref().unwrap_or("version 0");
            assert_eq!(page["body"], expected, "{}: editor {e}", at.base);
        }
    }
}
