//! Rendered `GET /v1/workers` answers, kept while they are valid, and their gzip form.

use axum::http::{HeaderMap, header};
use bytes::Bytes;
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One rendered list: the JSON, and its gzip form made at most once, when a client
/// first asks for it.
#[derive(Debug)]
pub struct Rendered {
    json: Bytes,
    gzip: OnceLock<Option<Bytes>>,
}

impl Rendered {
    /// Wraps a rendered JSON body.
    pub fn new(json: Bytes) -> Arc<Rendered> {
        Arc::new(Rendered {
            json,
            gzip: OnceLock::new(),
        })
    }

    /// The body to send and whether it is gzip-encoded: gzip when the client accepts
    /// it and compression worked, else the JSON as it is.
    pub fn body(&self, gzip: bool) -> (Bytes, bool) {
        if gzip && let Some(z) = self.gzip.get_or_init(|| compress(&self.json)) {
            return (z.clone(), true);
        }
        (self.json.clone(), false)
    }
}

fn compress(json: &[u8]) -> Option<Bytes> {
    // The fastest level: a worker list is repetitive JSON and shrinks about tenfold
    // already, and this runs on the request path once per rendering.
    let mut z = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 8),
        flate2::Compression::fast(),
    );
    z.write_all(json).ok()?;
    z.finish().ok().map(Bytes::from)
}

/// Whether the request's `Accept-Encoding` allows gzip (a `gzip` or `*` coding whose
/// `q` is not 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// A cached answer: the view index it was rendered at, when, and the answer.
type Entry = (u64, Instant, Arc<Rendered>);

/// Rendered answers, per filter, valid while the view's index is unchanged; fresh for
/// [`ListCache::MAX_AGE`] (probe details such as `last_probe_at` change without moving
/// the index), and served a little longer while one request renders the replacement.
/// Gateways polling a large list then cost a copy, not a rendering.
#[derive(Debug)]
pub struct ListCache {
    entries: Mutex<HashMap<String, Entry>>,
    /// Held while a list is rendered: one rendering at a time.
    render: tokio::sync::Mutex<()>,
    max_age: Duration,
}

impl Default for ListCache {
    fn default() -> Self {
        ListCache::with_max_age(Self::MAX_AGE)
    }
}

impl ListCache {
    /// How long a rendered list is served as fresh.
    pub const MAX_AGE: Duration = Duration::from_secs(1);
    /// Distinct filters kept.
    const MAX_ENTRIES: usize = 32;

    fn with_max_age(max_age: Duration) -> ListCache {
        ListCache {
            entries: Mutex::default(),
            render: tokio::sync::Mutex::default(),
            max_age,
        }
    }

    /// The answer for `key` at the view index `index()` returns: the cached one while
    /// fresh, else the one `render` makes (it returns the index it rendered at).
    ///
    /// One caller renders at a time. While it does, the others serve the cached answer
    /// when only its age ran out (same index: same workers and statuses, older probe
    /// details), or wait for the rendering when the index moved. Without this, every
    /// request in flight when an answer expired rendered its own copy at once, and
    /// those renderings made the slowest answers several times slower than the rest.
    pub async fn get_or_render<E>(
        &self,
        key: String,
        index: impl Fn() -> u64,
        render: impl FnOnce() -> Result<(u64, Bytes), E>,
    ) -> Result<(u64, Arc<Rendered>), E> {
        let current = index();
        let _rendering = match self.get(&key, current) {
            Some((cached, true)) => return Ok((current, cached)),
            Some((aged, false)) => match self.render.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok((current, aged)),
            },
            None => {
                let guard = self.render.lock().await;
                let current = index();
                if let Some((cached, true)) = self.get(&key, current) {
                    return Ok((current, cached));
                }
                guard
            }
        };
        let (at, json) = render()?;
        let rendered = Rendered::new(json);
        self.put(key, at, Arc::clone(&rendered));
        Ok((at, rendered))
    }

    /// The cached answer for `key` rendered at `index`, and whether it is still fresh.
    fn get(&self, key: &str, index: u64) -> Option<(Arc<Rendered>, bool)> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (i, at, rendered) = entries.get(key)?;
        (*i == index).then(|| (Arc::clone(rendered), at.elapsed() < self.max_age))
    }

    fn put(&self, key: String, index: u64, rendered: Arc<Rendered>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (index, Instant::now(), rendered));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use std::io::Read;

    fn with(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn gzip_is_used_only_when_accepted() {
        assert!(accepts_gzip(&with("gzip")));
        assert!(accepts_gzip(&with("br, GZIP;q=0.5")));
        assert!(accepts_gzip(&with("*")));
        assert!(!accepts_gzip(&with("gzip;q=0")));
        assert!(!accepts_gzip(&with("br, zstd")));
        assert!(!accepts_gzip(&with("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn the_gzip_form_decodes_to_the_json() {
        let json = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "workers": (0..200).map(|i| serde_json::json!({"id": i, "status": "ready"})).collect::<Vec<_>>()
            }))
            .unwrap(),
        );
        let r = Rendered::new(json.clone());
        assert_eq!(r.body(false), (json.clone(), false));
        let (z, gz) = r.body(true);
        assert!(gz && z.len() * 4 < json.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, json);
    }

    fn body(r: &Rendered) -> Bytes {
        r.body(false).0
    }

    fn never() -> Result<(u64, Bytes), ()> {
        panic!("rendered although a cached answer should have been served")
    }

    #[tokio::test]
    async fn a_fresh_answer_is_served_without_rendering() {
        let cache = ListCache::default();
        let (i, r) = cache
            .get_or_render("k".into(), || 7, || Ok::<_, ()>((7, Bytes::from("a"))))
            .await
            .unwrap();
        assert_eq!((i, body(&r)), (7, Bytes::from("a")));
        let (i, r) = cache.get_or_render("k".into(), || 7, never).await.unwrap();
        assert_eq!((i, body(&r)), (7, Bytes::from("a")));
        // Another filter, or a moved index, renders.
        let (_, r) = cache
            .get_or_render("k".into(), || 8, || Ok::<_, ()>((8, Bytes::from("b"))))
            .await
            .unwrap();
        assert_eq!(body(&r), Bytes::from("b"));
    }

    #[tokio::test]
    async fn an_aged_answer_is_served_while_another_request_renders() {
        let cache = ListCache::with_max_age(Duration::ZERO);
        cache.put("k".into(), 7, Rendered::new(Bytes::from("old")));
        let rendering = cache.render.lock().await;
        let (i, r) = cache.get_or_render("k".into(), || 7, never).await.unwrap();
        assert_eq!((i, body(&r)), (7, Bytes::from("old")));
        drop(rendering);
        // Nobody rendering: this request renders the replacement.
        let (_, r) = cache
            .get_or_render("k".into(), || 7, || Ok::<_, ()>((7, Bytes::from("new"))))
            .await
            .unwrap();
        assert_eq!(body(&r), Bytes::from("new"));
    }

    #[tokio::test]
    async fn after_a_change_requests_wait_for_the_one_rendering() {
        let cache = Arc::new(ListCache::default());
        cache.put("k".into(), 7, Rendered::new(Bytes::from("old")));
        let rendering = cache.render.lock().await;
        let waiter = {
            let cache = Arc::clone(&cache);
            tokio::spawn(async move { cache.get_or_render("k".into(), || 8, never).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "the old answer is not served after a change"
        );
        // The request holding the lock finishes its rendering at the new index.
        cache.put("k".into(), 8, Rendered::new(Bytes::from("new")));
        drop(rendering);
        let (i, r) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter is woken")
            .unwrap()
            .unwrap();
        assert_eq!((i, body(&r)), (8, Bytes::from("new")));
    }
}
