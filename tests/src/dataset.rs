//! Deterministic venue datasets shaped like the original application's data
//! (`original.md`): about 10 images per venue, about a quarter of the venues with failed
//! uploads, realistic keys and sizes, Google Places URLs carrying `key=`.
//!
//! The same seed always produces the same rows, so benchmark runs compare like with like.

use serde_json::{json, Value};

/// SplitMix64: tiny, fast, deterministic.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The seed of a chaos run: `CHAOS_SEED` when set (to replay a run), the clock
    /// otherwise; prints it and how to replay it under `label`.
    pub fn chaos_seed(label: &str) -> anyhow::Result<u64> {
        let seed: u64 = match std::env::var("CHAOS_SEED") {
            Ok(s) => s.parse()?,
            Err(_) => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_nanos() as u64,
        };
        eprintln!("{label} seed: {seed} (replay with CHAOS_SEED={seed})");
        Ok(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One of `items`, by weight.
    pub fn weighted<'a, T>(&mut self, items: &'a [(T, u32)]) -> &'a T {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(total as u64) as u32;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        &items[items.len() - 1].0
    }

    /// Random characters from the URL-safe base64 alphabet.
    pub fn token(&mut self, len: usize) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..len)
            .map(|_| A[self.below(64) as usize] as char)
            .collect()
    }
}

/// How the generated rows look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The project's first generator: 5–15 images per venue, a quarter of the venues with
    /// failures, long random tokens everywhere (about 10 KB per venue on disk: it barely
    /// compresses, so decompression dominates a scan).
    Wide,
    /// Shaped like a real application's rows: 10 images per venue, about 4.8 KB of JSON
    /// text and 1.4 KB on disk after TOAST compression, keys and URL prefixes repeated,
    /// one API key for the whole app, and about 10% of images failed or permanently
    /// failed. Here the per-row and per-element work shows.
    Compact,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wide" => Ok(Kind::Wide),
            "compact" => Ok(Kind::Compact),
            _ => Err(format!("unknown shape {s:?} (wide, compact)")),
        }
    }
}

impl Kind {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Wide => "wide",
            Kind::Compact => "compact",
        }
    }
}

/// How the images column of a generated dataset is compressed when it is stored.
///
/// PostgreSQL compresses a value of more than about 2 kB before storing it: with pglz
/// unless the column says otherwise (`ALTER TABLE ... SET COMPRESSION lz4`) or the
/// session's `default_toast_compression` does. lz4 decompresses about twice as fast, so
/// on lz4 data the same scan costs less and the per-image work shows more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// PostgreSQL's default.
    Pglz,
    /// Needs a server built `--with-lz4` (Debian's is; the PostgreSQL 18 wheel is not).
    Lz4,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pglz" => Ok(Compression::Pglz),
            "lz4" => Ok(Compression::Lz4),
            _ => Err(format!("unknown compression {s:?} (pglz, lz4)")),
        }
    }
}

impl Compression {
    /// Its name, as `default_toast_compression` and `pg_column_compression` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Pglz => "pglz",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Dataset shape.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Number of venues.
    pub venues: u64,
    /// Mean images per venue (uniform in mean±5).
    pub images_per_venue: u64,
    /// Share of venues with at least one failure.
    pub failing_share: f64,
    /// Seed.
    pub seed: u64,
    /// When set, failed images point at the fake provider at this base URL, with a
    /// deterministic mix of routes (see [`fake_route`]); `None` gives production-like URLs.
    pub provider_base: Option<String>,
    /// Wide or compact rows.
    pub kind: Kind,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            venues: 200_000,
            images_per_venue: 10,
            failing_share: 0.25,
            seed: 2008,
            provider_base: None,
            kind: Kind::Wide,
        }
    }
}

/// Providers and their share of images.
pub const PROVIDERS: &[(&str, u32)] = &[
    ("google_places", 60),
    ("foursquare", 20),
    ("here", 8),
    ("unsplash", 8),
    ("pexels", 4),
];

/// Error types of failed images, by frequency, with the HTTP status that produced them.
pub const ERRORS: &[((&str, Option<i32>), u32)] = &[
    (("rate_limited", Some(429)), 40),
    (("service_unavailable", Some(503)), 8),
    (("network_timeout", None), 10),
    (("gateway_timeout", Some(504)), 4),
    (("bad_gateway", Some(502)), 3),
    (("server_error", Some(500)), 5),
    (("not_found", Some(404)), 12),
    (("forbidden", Some(403)), 8),
    (("file_too_large", None), 2),
    (("http_error", Some(418)), 4),
    (("download_failed", None), 2),
    (("unknown_error", None), 2),
];

fn timestamp(rng: &mut Rng) -> String {
    let day = 1 + rng.below(28);
    let month = 1 + rng.below(10);
    format!(
        "2025-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rng.below(24),
        rng.below(60),
        rng.below(60)
    )
}

/// A provider URL for an image. Google URLs carry a long `photo_reference` and an API key.
pub fn provider_url(rng: &mut Rng, provider: &str, venue: u64, n: u64) -> String {
    match provider {
        "google_places" => format!(
            "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference={}&key=AIzaSy{}",
            rng.token(220),
            rng.token(33)
        ),
        "foursquare" => format!(
            "https://fastly.4sqi.net/img/general/original/{venue}_{}.jpg",
            rng.token(43)
        ),
        "here" => format!("https://images.here.com/places/v1/{}/photo-{n}.jpg", rng.token(24)),
        "unsplash" => format!(
            "https://images.unsplash.com/photo-{}?ixlib=rb-4.0.3&w=1600&q=80",
            rng.token(24)
        ),
        _ => format!("https://images.pexels.com/photos/{}/pexels-photo.jpeg", rng.below(9_000_000)),
    }
}

/// What the fake provider will do with a failed image's URL (the demo and the
/// end-to-end tests use these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeRoute {
    /// Served at once.
    Image,
    /// Google-style photo URL with `key=`: 302 to the image.
    GoogleRedirect,
    /// 429 with Retry-After: 1 on the first request, then the image.
    FlakyRateLimit,
    /// 503 twice, then the image (recovered on the third attempt).
    FlakyUnavailable,
    /// Always 503: retried until `max_retries`, then permanently failed.
    AlwaysUnavailable,
    /// 404: permanently failed at once.
    NotFound,
    /// 403 with a PNG error tile: permanently failed at once.
    Forbidden,
    /// HTML served as image/jpeg: permanently failed (not_an_image).
    Html,
}

/// The route of a failed image of the fake dataset, by weight.
pub fn fake_route(rng: &mut Rng) -> FakeRoute {
    *rng.weighted(&[
        (FakeRoute::Image, 55),
        (FakeRoute::GoogleRedirect, 12),
        (FakeRoute::FlakyRateLimit, 8),
        (FakeRoute::FlakyUnavailable, 5),
        (FakeRoute::AlwaysUnavailable, 5),
        (FakeRoute::NotFound, 6),
        (FakeRoute::Forbidden, 5),
        (FakeRoute::Html, 4),
    ])
}

/// The fake provider URL of a route.
pub fn fake_url(base: &str, provider: &str, route: FakeRoute, name: &str) -> String {
    let base = base.trim_end_matches('/');
    match route {
        FakeRoute::Image => format!("{base}/{provider}/img/{name}.png"),
        FakeRoute::GoogleRedirect => format!(
            "{base}/{provider}/maps/api/place/photo?maxwidth=1600&photo_reference={name}&key=DEMOSECRETKEY42"
        ),
        FakeRoute::FlakyRateLimit => format!("{base}/{provider}/flaky/1/429/{name}.png"),
        FakeRoute::FlakyUnavailable => format!("{base}/{provider}/flaky/2/503/{name}.png"),
        FakeRoute::AlwaysUnavailable => format!("{base}/{provider}/status/503/{name}.png"),
        FakeRoute::NotFound => format!("{base}/{provider}/status/404/{name}.png"),
        FakeRoute::Forbidden => format!("{base}/{provider}/status/403/{name}.png"),
        FakeRoute::Html => format!("{base}/{provider}/html/{name}.png"),
    }
}

/// One image element. `failed`: None for uploaded, else the failure status.
pub fn image(rng: &mut Rng, venue: u64, slug: &str, n: u64, failed: Option<&str>) -> Value {
    image_with(rng, venue, slug, n, failed, None)
}

/// Like [`image`]; with `fake_base`, a failed image's URL points at the fake provider.
pub fn image_with(
    rng: &mut Rng,
    venue: u64,
    slug: &str,
    n: u64,
    failed: Option<&str>,
    fake_base: Option<&str>,
) -> Value {
    let mut provider = *rng.weighted(PROVIDERS);
    let mut purl = provider_url(rng, provider, venue, n);
    if let (Some(base), Some(_)) = (fake_base, failed) {
        let route = fake_route(rng);
        if route == FakeRoute::GoogleRedirect {
            provider = "google_places";
        }
        purl = fake_url(base, provider, route, &format!("v{venue}-{n}"));
    }
    let (w, h) = *rng.weighted(&[
        ((4032, 3024), 4),
        ((1920, 1080), 5),
        ((1600, 1200), 4),
        ((800, 800), 2),
        ((1080, 1920), 2),
    ]);
    let q = venue_images_core::scores::quality_score(Some(w), Some(h));
    let fetched = timestamp(rng);
    let mut img = json!({
        "provider": provider,
        "provider_url": purl,
        "width": w,
        "height": h,
        "quality_score": q,
        "fetched_at": fetched,
        "position": n,
        "source": "enrichment",
        "attribution": format!("<a href=\"https://maps.google.com/maps/contrib/{}\">Contributor {}</a>", rng.below(1u64 << 60), rng.below(10_000)),
    });
    let obj = img.as_object_mut().expect("object");
    match failed {
        None => {
            let file = venue_images_core::naming::file_name(&purl, Some(provider)).expect("name");
            obj.insert(
                "url".into(),
                json!(format!(
                    "https://ik.imagekit.io/eventasaurus/venues/{slug}/{file}"
                )),
            );
            obj.insert(
                "imagekit_path".into(),
                json!(format!("/venues/{slug}/{file}")),
            );
            obj.insert("upload_status".into(), json!("uploaded"));
            if rng.chance(0.1) {
                obj.insert("retry_count".into(), json!(1));
                obj.insert("retried_at".into(), json!(timestamp(rng)));
            }
        }
        Some(status) => {
            let (etype, code) = *rng.weighted(ERRORS);
            let retries = if status == "permanently_failed" {
                3
            } else {
                rng.below(3)
            };
            obj.insert("url".into(), json!(purl));
            obj.insert("upload_status".into(), json!(status));
            obj.insert("retry_count".into(), json!(retries));
            obj.insert(
                "error_details".into(),
                json!({
                    "error": format!("{{:download_failed, {{:http_status, {}}}}}", code.unwrap_or(0)),
                    "error_type": etype,
                    "status_code": code,
                    "timestamp": timestamp(rng),
                    "retry_attempt": retries,
                }),
            );
        }
    }
    img
}

/// One venue row of the compact shape (see [`Kind::Compact`]).
fn compact_venue(shape: &Shape, id: u64) -> (u64, String, String, u64, Value) {
    const KEY: &str = "AIzaSyB4-venue-images-demo-key-000000";
    let mut rng = Rng::new(shape.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let slug = format!("venue-{id}");
    let name = format!("Venue {id}");
    let city = 1 + rng.below(500);
    let images: Vec<Value> = (0..10u64)
        .map(|n| {
            let provider = *rng.weighted(PROVIDERS);
            let purl = match provider {
                "google_places" => format!(
                    "https://maps.googleapis.com/maps/api/place/photo?maxwidth=1600&photo_reference={}&key={KEY}",
                    rng.token(40)
                ),
                "foursquare" => format!("https://fastly.4sqi.net/img/general/original/{}_{}.jpg", id, rng.token(16)),
                _ => format!("https://images.{provider}.example.com/photos/{id}/{}.jpg", rng.token(16)),
            };
            let (w, h) = *rng.weighted(&[((4032, 3024), 4), ((1920, 1080), 5), ((1600, 1200), 4), ((800, 800), 2)]);
            let mut img = json!({
                "provider": provider,
                "provider_url": purl,
                "width": w,
                "height": h,
                "quality_score": venue_images_core::scores::quality_score(Some(w), Some(h)),
                "fetched_at": timestamp(&mut rng),
                "position": n,
                "attribution": format!("Contributor {}", rng.below(100_000)),
            });
            let obj = img.as_object_mut().expect("object");
            if rng.chance(0.10) {
                let status = if rng.chance(0.2) { "permanently_failed" } else { "failed" };
                let (etype, code) = *rng.weighted(ERRORS);
                let retries = if status == "permanently_failed" { 3 } else { rng.below(3) };
                obj.insert("url".into(), json!(purl));
                obj.insert("upload_status".into(), json!(status));
                obj.insert("retry_count".into(), json!(retries));
                obj.insert(
                    "error_details".into(),
                    json!({"error": "download failed", "error_type": etype, "status_code": code,
                           "timestamp": timestamp(&mut rng), "retry_attempt": retries}),
                );
            } else {
                let file = venue_images_core::naming::file_name(&purl, Some(provider)).expect("name");
                obj.insert("url".into(), json!(format!("https://ik.imagekit.io/eventasaurus/venues/{slug}/{file}")));
                obj.insert("imagekit_path".into(), json!(format!("/venues/{slug}/{file}")));
                obj.insert("upload_status".into(), json!("uploaded"));
            }
            img
        })
        .collect();
    (id, name, slug, city, Value::Array(images))
}

/// One venue row: (id, name, slug, city_id, images).
pub fn venue(shape: &Shape, id: u64) -> (u64, String, String, u64, Value) {
    if shape.kind == Kind::Compact {
        return compact_venue(shape, id);
    }
    let mut rng = Rng::new(shape.seed ^ id.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let slug = format!(
        "venue-{id}-{}",
        rng.token(6).to_lowercase().replace('_', "x")
    );
    let name = format!("Venue {id} {}", rng.token(8));
    let city = 1 + rng.below(500);
    let lo = shape.images_per_venue.saturating_sub(5).max(1);
    let n = lo + rng.below(11);
    let failing = rng.chance(shape.failing_share);
    let nfailed = if failing { 1 + rng.below(4.min(n)) } else { 0 };
    let images: Vec<Value> = (0..n)
        .map(|i| {
            let failed = if i < nfailed {
                Some(if rng.chance(0.2) {
                    "permanently_failed"
                } else {
                    "failed"
                })
            } else {
                None
            };
            image_with(
                &mut rng,
                id,
                &slug,
                i,
                failed,
                shape.provider_base.as_deref(),
            )
        })
        .collect();
    (id, name, slug, city, Value::Array(images))
}

/// Escapes a value for PostgreSQL's COPY text format.
pub fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
}

/// COPY text rows for venues `from..to` (columns id, name, slug, city_id, venue_images).
pub fn copy_rows(shape: &Shape, from: u64, to: u64) -> String {
    let mut out = String::with_capacity(((to - from) * 7000) as usize);
    for id in from..to {
        let (id, name, slug, city, images) = venue(shape, id);
        out.push_str(&id.to_string());
        out.push('\t');
        copy_escape(&name, &mut out);
        out.push('\t');
        copy_escape(&slug, &mut out);
        out.push('\t');
        out.push_str(&city.to_string());
        out.push('\t');
        copy_escape(&images.to_string(), &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let shape = Shape {
            venues: 2000,
            ..Shape::default()
        };
        assert_eq!(copy_rows(&shape, 1, 5), copy_rows(&shape, 1, 5));
        let mut failing = 0;
        let mut images = 0;
        for id in 1..=2000 {
            let (_, _, _, _, v) = venue(&shape, id);
            let arr = v.as_array().unwrap();
            images += arr.len();
            if arr.iter().any(|i| i["upload_status"] != "uploaded") {
                failing += 1;
            }
        }
        assert!((400..600).contains(&failing), "{failing}");
        assert!((18_000..22_000).contains(&images), "{images}");
    }

    #[test]
    fn the_compact_shape_is_what_it_says() {
        let shape = Shape {
            venues: 2000,
            kind: Kind::Compact,
            ..Shape::default()
        };
        let (mut bytes, mut images, mut failed) = (0usize, 0usize, 0usize);
        for id in 1..=2000 {
            let (_, _, _, _, v) = venue(&shape, id);
            bytes += v.to_string().len();
            let arr = v.as_array().unwrap();
            images += arr.len();
            failed += arr
                .iter()
                .filter(|i| i["upload_status"] != "uploaded")
                .count();
        }
        assert_eq!(images, 20_000);
        let per_venue = bytes / 2000;
        assert!(
            (4_300..5_300).contains(&per_venue),
            "{per_venue} bytes of JSON per venue"
        );
        assert!((1_800..2_200).contains(&failed), "{failed} failed images");
    }
}
