//! Liveness and readiness.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::resource;
use crate::error::ApiError;
use crate::startup::Readiness;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(health)))
        .service(resource("/ready").route(web::get().to(ready)));
}

/// GET /api/health: the process runs.
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// GET /api/ready: MySQL answers (and Redis, when configured) and migrations are
/// applied. `writer` names the database node all work goes to (`host:port`, never
/// credentials): with `database.urls`, the first healthy node of the list; with
/// Redis, `redisPrimary` names the server in use (`host:port`).
async fn ready(readiness: web::Data<Readiness>) -> Result<HttpResponse, ApiError> {
    let timeout = Duration::from_secs(2);
    if !readiness.migrated() {
        return Err(ApiError::Unavailable(
            "database migrations are not applied yet",
        ));
    }
    if readiness.db.ping(timeout).await.is_err() {
        return Err(ApiError::Unavailable("the database is not answering"));
    }
    // Read after the ping, which waits for a writer to be chosen.
    let Some(writer) = readiness.db.writer() else {
        return Err(ApiError::Unavailable("no database node is healthy"));
    };
    let mut body =
        json!({ "status": "ready", "database": "ok", "writer": writer, "redis": "disabled" });
    if let Some(redis) = &readiness.redis {
        if !crate::redis::ping(redis, timeout).await {
            return Err(ApiError::Unavailable("redis is not answering"));
        }
        body["redis"] = json!("ok");
        // The server that answered: with Sentinel, the primary it named last.
        body["redisPrimary"] = json!(redis.primary());
    }
    Ok(HttpResponse::Ok().json(body))
}
