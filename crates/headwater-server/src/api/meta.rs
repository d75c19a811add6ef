//! The server's own routes: health, version and the API's documentation page.

use std::sync::Arc;

use super::json::Json;
use headwater_store::Store;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Arc<dyn Store>> {
    OpenApiRouter::new().routes(routes!(health)).routes(routes!(version))
}

#[derive(Serialize, ToSchema)]
struct Health {
    status: &'static str,
}

/// Whether the server is up. Needs no API key.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Serialize, ToSchema)]
struct Version {
    version: &'static str,
    api_version: &'static str,
}

#[utoipa::path(get, path = "/version", tag = "meta", responses((status = 200, body = Version)))]
async fn version() -> Json<Version> {
    Json(Version { version: env!("CARGO_PKG_VERSION"), api_version: "1" })
}

/// Lists the API from its own OpenAPI document; no external assets, so it
/// works offline.
pub(super) const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Headwater API</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b2733}
@media (prefers-color-scheme:dark){body{background:#11161c;color:#dde5ee}code{background:#1f2a36}}
h1{font-size:1.4rem} .op{border-bottom:1px solid #8884;padding:.6rem 0}
.m{display:inline-block;width:4.5rem;font-weight:600;text-transform:uppercase}
code{background:#eef2f6;padding:.1rem .3rem;border-radius:3px} .d{margin:.2rem 0 0 4.5rem;opacity:.8}
</style></head><body>
<h1>Headwater API</h1><p>Machine-readable: <a href="openapi.json"><code>/api/openapi.json</code></a></p>
<div id="ops">Loading…</div>
<script>
fetch('openapi.json').then(r=>r.json()).then(doc=>{
  const ops=document.getElementById('ops'); ops.textContent='';
  for(const [path,item] of Object.entries(doc.paths)){for(const [m,op] of Object.entries(item)){
    const d=document.createElement('div'); d.className='op';
    const s=document.createElement('span'); s.className='m'; s.textContent=m; d.appendChild(s);
    const c=document.createElement('code'); c.textContent='/api'+path; d.appendChild(c);
    const p=document.createElement('div'); p.className='d'; p.textContent=(op.summary||'')+' '+(op.description||''); d.appendChild(p);
    ops.appendChild(d);}}
});
</script></body></html>"#;
