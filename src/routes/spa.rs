//! The browser client: files from `static.dir` as they are, and `index.html` for every
//! other path that is not the API (`/login`, `/chat/42`, …) so client-side routes
//! survive a reload. `index.html` is never cached; other files are revalidated.
//! `/sw.js` (the service worker) is revalidated every time too, so a deploy's new
//! worker (and the app shell it caches) reaches every installed client at once;
//! `/manifest.webmanifest` is a plain file (`application/manifest+json`).

use std::path::PathBuf;

use actix_files::{Files, NamedFile};
use actix_web::dev::{fn_service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CacheControl, CacheDirective};
use actix_web::HttpResponse;

use crate::error::ApiError;

/// `GET /sw.js`: the service worker at the root scope, `Cache-Control: no-cache`.
/// Registered before [`service`], which would serve it with the default headers.
pub fn service_worker(dir: PathBuf) -> actix_web::Resource {
    let file = dir.join("sw.js");
    actix_web::web::resource("/sw.js").route(actix_web::web::get().to(
        move |req: actix_web::HttpRequest| {
            let file = file.clone();
            async move {
                match NamedFile::open_async(&file).await {
                    Ok(f) => {
                        let mut res = f.use_etag(true).use_last_modified(true).into_response(&req);
                        res.headers_mut().insert(
                            actix_web::http::header::CACHE_CONTROL,
                            actix_web::http::header::HeaderValue::from_static("no-cache"),
                        );
                        res
                    }
                    Err(_) => actix_web::ResponseError::error_response(&ApiError::NotFound("file")),
                }
            }
        },
    ))
}

pub fn service(dir: PathBuf) -> Files {
    let index = dir.join("index.html");
    Files::new("/", dir)
        .index_file("index.html")
        .use_etag(true)
        .use_last_modified(true)
        .default_handler(fn_service(move |req: ServiceRequest| {
            let index = index.clone();
            async move {
                let (req, _) = req.into_parts();
                let path = req.path();
                if path.starts_with("/api/") || path == "/api" || path.starts_with("/ws") {
                    let res =
                        actix_web::ResponseError::error_response(&ApiError::NotFound("route"));
                    return Ok(ServiceResponse::new(req, res));
                }
                let res = match NamedFile::open_async(&index).await {
                    Ok(f) => {
                        let mut res = f.into_response(&req);
                        res.headers_mut().insert(
                            actix_web::http::header::CACHE_CONTROL,
                            CacheControl(vec![CacheDirective::NoCache])
                                .to_string()
                                .parse()
                                .map_err(actix_web::error::ErrorInternalServerError)?,
                        );
                        res
                    }
                    Err(_) => HttpResponse::NotFound()
                        .content_type("text/plain")
                        .body("the web client is not installed (static.dir has no index.html)"),
                };
                Ok(ServiceResponse::new(req, res))
            }
        }))
}
