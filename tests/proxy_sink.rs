//! The proxy's log sink: sends never wait for a stalled store, a full queue drops with a count,
//! and the remote sink keeps records on disk through an ingest outage and a restart, delivering
//! each exactly once into the receiving store.

use std::path::Path;
use std::time::{Duration, Instant};

use switchyard::formats::{self, Format};
use switchyard::prices::PriceCatalog;
use switchyard::proxy::sink::{LogSink, SinkOptions, SinkTarget, to_ndjson};
use switchyard::query::{QueryConfig, QueryEngine};
use switchyard::record::{CostSource, Item, Record};
use switchyard::store::{Location, Store, StoreConfig};
use tokio::sync::Notify;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use crate::common::{
    MockUpstream, Proxy, Server, api_query, chat_body, client, d, fast_mock, free_port, query_csv,
    upstream_toml,
};

/// A proxy attempt record, as the proxy fills it in.
fn rec(id: &str) -> Record {
    Record {
        request_id: id.to_string(),
        ts_us: chrono::Utc::now().timestamp_micros(),
        model: "openai/gpt-4o-mini".into(),
        provider: Some("openai".into()),
        task: Some("summarize".into()),
        gateway: Some("switchyard".into()),
        key_id: Some("team-search".into()),
        prompt_tokens: Some(120),
        completion_tokens: Some(30),
        cached_tokens: Some(20),
        cost_usd: Some(d("0.000034500001")),
        cost_source: Some(CostSource::Catalog),
        latency_ms: Some(812.25),
        ttft_ms: Some(93.5),
        status: Some(200),
        finish_reason: Some("stop".into()),
        streamed: Some(true),
        attempt: Some(1),
        parent_id: Some(format!("{id}-parent")),
        policy_version: Some("2026-11-25T10:00:00Z-7f3a".into()),
        route: Some("summarize:target".into()),
        metadata: [("app".to_string(), "search \"ui\"".to_string())].into(),
        ..Default::default()
    }
}

/// Rows a flush takes; the store pushes back past twice that.
const FLUSH_ROWS: usize = 500;

async fn open_store(dir: &Path) -> Store {
    let loc = Location::open(dir.to_str().unwrap()).unwrap();
    let cfg = StoreConfig {
        wal_dir: Some(dir.join("wal")),
        max_buffer_rows: FLUSH_ROWS,
        ..Default::default()
    };
    Store::open(loc, cfg, PriceCatalog::embedded().unwrap())
        .await
        .unwrap()
}

/// Stalls the store as flushes that do not keep up do: the buffer is filled to its
/// back-pressure limit (twice the flush size) while no flusher runs, so every further commit
/// waits for a flush. [`Stalled::release`] starts the flusher.
struct Stalled {
    store: Store,
    fill: tokio::task::JoinHandle<()>,
}

impl Stalled {
    async fn new(store: &Store) -> Stalled {
        let n = 2 * FLUSH_ROWS;
        let fill: Vec<Record> = (0..n).map(|i| rec(&format!("fill-{i}"))).collect();
        let body = to_ndjson(&fill).unwrap();
        let st = store.clone();
        let fill = tokio::spawn(async move {
            let out = st.ingest(formats::parse_body(&body, Format::Auto, 0)).await;
            assert_eq!(out.unwrap().accepted, 2 * FLUSH_ROWS);
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while count_in(store, "fill-%").await.0 < n as i64 {
            assert!(Instant::now() < deadline, "the store never filled");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Stalled {
            store: store.clone(),
            fill,
        }
    }

    /// Starts the flusher; returns its stop handle and task.
    async fn release(self) -> (std::sync::Arc<Notify>, tokio::task::JoinHandle<()>) {
        let stop = std::sync::Arc::new(Notify::new());
        let flusher = tokio::spawn(self.store.clone().run_flusher(stop.clone()));
        self.fill.await.unwrap();
        (stop, flusher)
    }
}

/// Rows and distinct ids among the store's requests whose id is `LIKE pattern`.
async fn count_in(store: &Store, pattern: &str) -> (i64, i64) {
    let q = QueryEngine::new(store.clone(), QueryConfig::default()).unwrap();
    let r = q
        .sql(&format!(
            "SELECT count(*) AS n, count(DISTINCT request_id) AS ids FROM requests \
             WHERE request_id LIKE '{pattern}'"
        ))
        .await
        .unwrap();
    let row = &switchyard::query::output::json_rows(&r).unwrap()[0];
    (row["n"].as_i64().unwrap(), row["ids"].as_i64().unwrap())
}

/// Polls `cond` every 20 ms for up to `secs` seconds.
async fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn metric(sink: &LogSink, name: &str) -> f64 {
    let mut m = String::new();
    sink.render_metrics(&mut m);
    m.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{m}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_never_wait_for_a_stalled_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let sink = LogSink::start(SinkTarget::Store(store.clone())).unwrap();
    let stall = Stalled::new(&store).await;
    let s = sink.clone();
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            for i in 0..5000 {
                s.send(rec(&format!("stall-{i}")));
            }
        }),
    )
    .await;
    assert!(sent.is_ok(), "send waited for the stalled store");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.queued(), 5000);
    assert_eq!(
        sink.written(),
        0,
        "nothing can be written while the store is stalled"
    );
    assert_eq!(sink.dropped(), 0);
    let (stop, flusher) = stall.release().await;
    wait_for(30, "the queued records to be written", || {
        sink.written() == 5000
    })
    .await;
    sink.close().await.unwrap();
    assert_eq!(count_in(&store, "stall-%").await, (5000, 5000));
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_records_written_total"),
        5000.0
    );
    assert_eq!(metric(&sink, "switchyard_proxy_log_queue_depth"), 0.0);
    stop.notify_one();
    flusher.await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_with_a_count_and_the_rest_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let opts = SinkOptions {
        channel_capacity: 8,
        batch_max: 4,
        batch_wait: Duration::from_millis(1),
        ..Default::default()
    };
    let sink = LogSink::start_with(SinkTarget::Store(store.clone()), opts).unwrap();
    let stall = Stalled::new(&store).await;
    for i in 0..100 {
        sink.send(rec(&format!("drop-{i}")));
        if i == 0 {
            // Let the writer take the first batch and wait on the stalled store.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (queued, dropped) = (sink.queued(), sink.dropped());
    assert_eq!(
        queued + dropped,
        100,
        "every record is queued or counted as dropped"
    );
    assert!(queued <= 8 + 4, "queued {queued} past the bound");
    assert!(dropped >= 88, "dropped {dropped}");
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_records_dropped_total"),
        dropped as f64
    );
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_records_queued_total"),
        queued as f64
    );
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_records_written_total"),
        0.0
    );
    let (stop, flusher) = stall.release().await;
    sink.close().await.unwrap();
    assert_eq!(sink.written(), queued);
    assert_eq!(sink.failed(), 0);
    assert_eq!(count_in(&store, "drop-%").await.0, queued as i64);
    // Closed: a late record is a counted drop, never silent.
    sink.send(rec("late"));
    assert_eq!(sink.dropped(), dropped + 1);
    stop.notify_one();
    flusher.await.unwrap();
    store.close().await.unwrap();
}

#[test]
fn ndjson_lines_are_canonical_records_that_read_back_unchanged() {
    let full = rec("rt-1");
    let bare = Record {
        request_id: "rt-2".into(),
        ts_us: 1_764_590_400_123_456,
        model: "unpriced/model-x".into(),
        ..Default::default()
    };
    let body = to_ndjson(&[full.clone(), bare.clone()]).unwrap();
    let text = String::from_utf8(body.clone()).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(text.contains("\"cost_usd\":\"0.000034500001\""), "{text}");
    assert!(
        !text.contains("\"date\"") && !text.contains("\"hour\""),
        "{text}"
    );
    let parsed = formats::parse_body(&body, Format::Auto, 0);
    assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
    let back: Vec<Record> = parsed
        .items
        .into_iter()
        .map(|(_, i)| match i {
            Item::Request(r) => *r,
            Item::Feedback(f) => panic!("read back as feedback: {f:?}"),
        })
        .collect();
    // The receiver decides the cost's source; everything else is as sent.
    let expected_full = Record {
        cost_source: None,
        ..full
    };
    // `task` is always written (the store's default), so it reads back set.
    let expected_bare = Record {
        task: Some("default".into()),
        ..bare
    };
    assert_eq!(back, vec![expected_full, expected_bare]);
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sink_queues_on_disk_through_an_outage_and_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let queue_dir = root.path().join("queue");
    let data = root.path().join("data");
    let port = free_port();
    let target = SinkTarget::Remote {
        url: format!("http://127.0.0.1:{port}/"),
        token: Some("ingest-secret".into()),
        queue_dir: queue_dir.clone(),
    };
    let opts = SinkOptions {
        batch_max: 64,
        close_timeout: Duration::from_millis(300),
        max_backoff: Duration::from_millis(200),
        ..Default::default()
    };

    // The ingest server is down: records queue on disk.
    let sink = LogSink::start_with(target.clone(), opts.clone()).unwrap();
    for i in 0..300 {
        sink.send(rec(&format!("remote-{i}")));
    }
    wait_for(10, "300 records on disk", || sink.queued() == 300).await;
    wait_for(10, "a failed delivery", || {
        metric(&sink, "switchyard_proxy_log_delivery_retries_total") >= 1.0
    })
    .await;
    assert_eq!(sink.written(), 0);
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_disk_queue_records"),
        300.0
    );
    sink.close().await.unwrap();
    assert!(!segments(&queue_dir).is_empty(), "the queue stays on disk");

    // Restarted while still down: the disk queue is picked up, new records join it.
    let sink = LogSink::start_with(target.clone(), opts.clone()).unwrap();
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_disk_queue_records"),
        300.0
    );
    for i in 300..500 {
        sink.send(rec(&format!("remote-{i}")));
    }
    wait_for(10, "200 more records on disk", || sink.queued() == 200).await;
    let oldest = segments(&queue_dir)[0].clone();
    let kept = root.path().join("kept-segment");
    std::fs::copy(&oldest, &kept).unwrap();

    // The ingest server comes back (requiring the token the sink sends): everything arrives.
    let envs = [
        ("SWITCHYARD_INGEST_TOKEN", "ingest-secret"),
        ("SWITCHYARD_ADMIN_TOKEN", "admin-secret"),
    ];
    let mut server = Server::start_on(&format!("127.0.0.1:{port}"), &data, &[], &envs);
    wait_for(30, "all 500 records delivered", || sink.written() == 500).await;
    assert!(
        segments(&queue_dir).is_empty(),
        "delivered segments are removed"
    );
    assert_eq!(metric(&sink, "switchyard_proxy_log_disk_queue_bytes"), 0.0);
    assert_eq!(sink.failed(), 0);

    // A crash between delivery and removal leaves a delivered segment behind: the re-send
    // on the next start is deduplicated by the server.
    sink.close().await.unwrap();
    std::fs::copy(&kept, &oldest).unwrap();
    let sink = LogSink::start_with(target, opts).unwrap();
    wait_for(30, "the leftover segment re-sent", || {
        segments(&queue_dir).is_empty() && sink.written() > 0
    })
    .await;
    sink.close().await.unwrap();

    assert!(server.terminate().success());
    let rows = query_csv(
        &data,
        "SELECT count(*), count(DISTINCT request_id), min(key_id), min(route), \
         CAST(sum(cost_usd) AS VARCHAR) FROM requests",
    );
    assert_eq!(rows[0][0], "500", "none lost or doubled: {rows:?}");
    assert_eq!(rows[0][1], "500");
    assert_eq!(rows[0][2], "team-search");
    assert_eq!(rows[0][3], "summarize:target");
    assert_eq!(
        rows[0][4].parse::<rust_decimal::Decimal>().unwrap(),
        d("0.000034500001") * rust_decimal::Decimal::from(500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_sink_counts_the_records_the_server_refuses() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let server = Server::start(&data, &[], &[]);
    let queue_dir = root.path().join("queue");
    let sink = LogSink::start_with(
        SinkTarget::Remote {
            url: server.base.clone(),
            token: None,
            queue_dir: queue_dir.clone(),
        },
        SinkOptions {
            batch_max: 10,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..40 {
        let mut r = rec(&format!("mixed-{i}"));
        if i % 4 == 0 {
            // Invalid: the server rejects it, naming the field.
            r.prompt_tokens = Some(-1);
        }
        sink.send(r);
    }
    wait_for(30, "every record answered", || {
        sink.written() + sink.failed() == 40
    })
    .await;
    assert_eq!(sink.failed(), 10);
    assert_eq!(sink.written(), 30);
    assert!(segments(&queue_dir).is_empty());
    assert_eq!(
        metric(&sink, "switchyard_proxy_log_records_failed_total"),
        10.0
    );
    sink.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_bounded_when_the_ingest_server_hangs() {
    // Accepts connections (the kernel's backlog) but never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root = tempfile::tempdir().unwrap();
    let queue_dir = root.path().join("queue");
    let sink = LogSink::start_with(
        SinkTarget::Remote {
            url: format!("http://{}", hung.local_addr().unwrap()),
            token: None,
            queue_dir: queue_dir.clone(),
        },
        SinkOptions {
            close_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..10 {
        sink.send(rec(&format!("hung-{i}")));
    }
    wait_for(10, "records on disk", || sink.queued() == 10).await;
    let started = Instant::now();
    sink.close().await.unwrap();
    // The default delivery timeout is 10 s: close cut it to its own deadline.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "close took {:?}",
        started.elapsed()
    );
    assert_eq!(sink.written(), 0);
    let on_disk: u64 = segments(&queue_dir)
        .iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_str().unwrap();
            name.split_once('-').unwrap().1.parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(on_disk, 10, "what was not delivered stays queued");
    drop(hung);
}

// ---- end to end: the real proxy in front of the mock upstream ----

const MINI: &str = "openai/gpt-4o-mini";

fn proxy_config(mock: &MockUpstream) -> String {
    upstream_toml("mock", &mock.base, &[MINI])
}

/// `n` sequential chat requests; their request ids and latencies.
async fn chats(proxy: &Proxy, n: usize) -> Vec<(String, Duration)> {
    let c = client();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let r = proxy
            .chat(&c, &chat_body(MINI, &format!("log me {i}")), &[])
            .await;
        assert_eq!(r.status(), 200, "logging never fails a request");
        let id = r.headers()["x-switchyard-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        r.bytes().await.unwrap();
        out.push((id, started.elapsed()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_logs_survive_an_ingest_outage_and_a_proxy_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let port = free_port();
    let ingest = format!("http://127.0.0.1:{port}");
    let args = ["--ingest-url", ingest.as_str()];
    // The ingest server is down: requests are served, their records queue on disk.
    let mut proxy = Proxy::start(dir.path(), &proxy_config(&mock), None, &args, &[]);
    let mut ids: Vec<String> = chats(&proxy, 20).await.into_iter().map(|r| r.0).collect();
    assert!(proxy.terminate().success());
    let queue = proxy.data_dir.join("proxy-queue");
    assert!(!segments(&queue).is_empty(), "records wait on disk");
    // Restarted, still down: more records join the queue.
    let proxy = Proxy::start(dir.path(), &proxy_config(&mock), None, &args, &[]);
    ids.extend(chats(&proxy, 10).await.into_iter().map(|r| r.0));
    // The ingest server comes back: everything arrives, once.
    let server = Server::start_on(
        &format!("127.0.0.1:{port}"),
        &dir.path().join("central"),
        &[],
        &[],
    );
    let c = client();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = api_query(
            &c,
            &server,
            "SELECT count(*), count(DISTINCT request_id) FROM requests",
        )
        .await;
        if rows[0][0] == serde_json::json!(30) || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        rows,
        vec![vec![serde_json::json!(30), serde_json::json!(30)]],
        "none lost or doubled"
    );
    let got = api_query(
        &c,
        &server,
        "SELECT request_id FROM requests ORDER BY request_id",
    )
    .await;
    let mut got: Vec<String> = got
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_string())
        .collect();
    got.sort();
    ids.sort();
    assert_eq!(got, ids);
    wait_for(10, "the delivered segments removed", || {
        segments(&queue).is_empty()
    })
    .await;
    drop(proxy);
}

/// An ingest server that takes `delay` to answer each `POST /v1/logs`, counting the ids.
async fn slow_ingest(delay: Duration) -> (String, Arc<Mutex<HashSet<String>>>) {
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    let ids = seen.clone();
    let app = axum::Router::new().route(
        "/v1/logs",
        axum::routing::post(move |body: axum::body::Bytes| {
            let ids = ids.clone();
            async move {
                tokio::time::sleep(delay).await;
                let mut n = 0;
                for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                    ids.lock()
                        .unwrap()
                        .insert(v["request_id"].as_str().unwrap().to_string());
                    n += 1;
                }
                axum::Json(serde_json::json!({"accepted": n, "duplicates": 0, "rejected": []}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_latency_does_not_wait_for_a_slow_log_store() {
    // The log store takes 2 s to take each batch; requests never wait for it.
    let stall = Duration::from_secs(2);
    let (ingest, seen) = slow_ingest(stall).await;
    let dir = tempfile::tempdir().unwrap();
    let mock = fast_mock();
    let mut proxy = Proxy::start(
        dir.path(),
        &proxy_config(&mock),
        None,
        &["--ingest-url", &ingest],
        &[],
    );
    let answered = chats(&proxy, 150).await;
    let mut latencies: Vec<Duration> = answered.iter().map(|r| r.1).collect();
    latencies.sort();
    let (median, worst) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
    );
    eprintln!("proxied latency with a 2 s log store: median {median:?}, max {worst:?}");
    assert!(
        worst < stall / 2,
        "a request waited for the log store: max {worst:?}, median {median:?}"
    );
    let mut m = String::new();
    for _ in 0..200 {
        m = proxy.metrics(&client()).await;
        if m.contains("switchyard_proxy_log_records_written_total 150") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        m.contains("switchyard_proxy_log_records_written_total 150"),
        "{m}"
    );
    assert!(proxy.terminate().success());
    let seen = seen.lock().unwrap();
    assert!(
        answered.iter().all(|(id, _)| seen.contains(id)),
        "every record delivered"
    );
}
