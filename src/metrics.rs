//! `GET /metrics` in the Prometheus text format, on its own listener
//! (`metrics.listen`, loopback by default) so it is never reachable through nginx.
//! Values are read from the live counters at scrape time.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use parley_actors::Realtime;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::push::Push;
use crate::startup::Readiness;

fn gauge(registry: &mut Registry, name: &str, help: &str, v: i64) {
    let g: Gauge = Gauge::default();
    g.set(v);
    registry.register(name, help, g);
}

fn counter(registry: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    registry.register(name, help, c);
}

/// The scrape, as text.
pub async fn render(rt: &Realtime, db: &Db, readiness: &Readiness, push: &Push) -> String {
    let mut r = Registry::with_prefix("parley");
    let m = rt.metrics();
    gauge(
        &mut r,
        "websocket_connections",
        "Open WebSocket connections",
        m.sessions_open(),
    );
    counter(
        &mut r,
        "websocket_connections_opened",
        "WebSocket connections opened",
        m.sessions_total(),
    );
    gauge(
        &mut r,
        "online_users",
        "Users with at least one session on this node",
        rt.bus().directory().online_users() as i64,
    );
    gauge(
        &mut r,
        "rooms",
        "Chat room actors alive on this node",
        m.rooms_open(),
    );
    counter(
        &mut r,
        "messages_stored",
        "Messages stored and fanned out",
        m.messages_stored(),
    );
    gauge(
        &mut r,
        "search_index_pending",
        "Stored messages this node has still to make findable",
        db.search_queue().pending() as i64,
    );
    counter(
        &mut r,
        "search_index_overflow",
        "Messages left out of a full search queue (indexed later by a repair scan)",
        db.search_queue().dropped_total(),
    );
    counter(
        &mut r,
        "messages_delivered",
        "Messages marked delivered by their recipients",
        m.receipts_total(),
    );
    gauge(
        &mut r,
        "messages_in_flight",
        "message:send frames accepted and not yet answered",
        rt.in_flight() as i64,
    );
    r.register(
        "send_to_ack_seconds",
        "Time from a message:send frame to its ack (stored durably first)",
        m.send_to_ack(),
    );
    counter(
        &mut r,
        "db_writer_switches",
        "Times the database writer moved to another node (database.urls)",
        db.writer_switches(),
    );
    counter(
        &mut r,
        "db_retries",
        "Database work run again after a deadlock, certification conflict or writer switch",
        db.retries(),
    );
    let pool = db.current_pool().map(|p| p.metrics()).unwrap_or_default();
    gauge(
        &mut r,
        "db_pool_connections",
        "MySQL connections open",
        pool.connection_count.load(Ordering::Relaxed) as i64,
    );
    gauge(
        &mut r,
        "db_pool_in_use",
        "MySQL connections checked out",
        pool.connections_in_use.load(Ordering::Relaxed) as i64,
    );
    gauge(
        &mut r,
        "db_pool_waiting",
        "Requests waiting for a MySQL connection",
        pool.active_wait_requests.load(Ordering::Relaxed) as i64,
    );
    let redis = match &readiness.redis {
        None => -1,
        Some(redis) => i64::from(crate::redis::ping(redis, Duration::from_millis(500)).await),
    };
    gauge(
        &mut r,
        "redis_up",
        "1 when Redis answers, 0 when not, -1 when not configured",
        redis,
    );
    if let Some(engine) = &push.engine {
        let stats = engine.stats();
        counter(
            &mut r,
            "push_sent",
            "Web Push messages a push service accepted",
            stats.sent.load(Ordering::Relaxed),
        );
        counter(
            &mut r,
            "push_failed",
            "Web Push messages given up on (refused, gone, or out of attempts)",
            stats.failed.load(Ordering::Relaxed),
        );
        counter(
            &mut r,
            "push_dropped",
            "Web Push offers dropped because the queue was full (oldest first) or a newer push replaced them",
            stats.dropped.load(Ordering::Relaxed),
        );
        gauge(
            &mut r,
            "push_queue",
            "Web Push offers waiting for the dispatcher",
            engine.queued() as i64,
        );
    }
    let mut out = String::new();
    if encode(&mut out, &r).is_err() {
        out.clear();
    }
    out
}

async fn scrape(
    rt: web::Data<Realtime>,
    db: web::Data<Db>,
    readiness: web::Data<Readiness>,
    push: web::Data<Push>,
) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(render(&rt, &db, &readiness, &push).await)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}
