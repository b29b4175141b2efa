//! The fakes follow `spec/imagekit.md`, and the uploader's clients handle every route
//! of them as the contract says. No database needed.

use std::time::Duration;

use base64::Engine;
use reqwest::multipart::{Form, Part};
use venue_image_uploader::failure::{ErrorType, Scope, Stage};
use venue_image_uploader::fetch::{FetchConfig, Fetcher};
use venue_image_uploader::imagekit::{ImageKit, UploadRequest};
use venue_images_tests::fakes::{
    image, FakeImageKit, FakeProvider, Fault, ImageKitConfig, ProviderConfig,
};

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
    )
}

async fn ik(cfg: ImageKitConfig) -> FakeImageKit {
    FakeImageKit::start(cfg).await.unwrap()
}

fn png_part(name: &str) -> Part {
    Part::bytes(image::personalise(&image::noise_png(2), name).to_vec())
        .file_name(name.to_string())
        .mime_str("image/png")
        .unwrap()
}

async fn post(
    fake: &FakeImageKit,
    auth: Option<&str>,
    form: Form,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut req = reqwest::Client::new()
        .post(fake.upload_url())
        .multipart(form);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn imagekit_auth_and_errors_follow_the_contract() {
    let fake = ik(ImageKitConfig::default()).await;
    let key = fake.private_key().to_string();
    let (s, h, b) = post(
        &fake,
        None,
        Form::new()
            .part("file", png_part("a.png"))
            .text("fileName", "a.png"),
    )
    .await;
    assert_eq!(s, 401);
    assert_eq!(
        b["message"],
        "Your request does not contain private API key."
    );
    assert!(h.contains_key("x-ik-requestid"));
    let (s, _, b) = post(
        &fake,
        Some(&basic("private_wrong")),
        Form::new()
            .part("file", png_part("a.png"))
            .text("fileName", "a.png"),
    )
    .await;
    assert_eq!(
        (s, b["message"].as_str().unwrap()),
        (403, "Your account cannot be authenticated.")
    );
    let (s, h, b) = post(
        &fake,
        Some(&basic(&key)),
        Form::new().text("fileName", "a.png"),
    )
    .await;
    assert_eq!(s, 400);
    assert!(
        b["message"].as_str().unwrap().contains("Missing file"),
        "{b}"
    );
    assert!(b["help"].as_str().unwrap().contains("support@imagekit.io"));
    assert!(h.contains_key("x-ik-requestid"));
    assert!(fake.files().is_empty());
}

#[tokio::test]
async fn imagekit_names_folders_uniqueness_and_overwrite() {
    let fake = ik(ImageKitConfig::default()).await;
    let auth = basic(fake.private_key());
    // Defaults: unique name suffix, folder "/", name sanitised.
    let (s, _, b) = post(
        &fake,
        Some(&auth),
        Form::new()
            .part("file", png_part("x.png"))
            .text("fileName", "my photo.png"),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let name = b["name"].as_str().unwrap();
    assert!(
        name.starts_with("my_photo_")
            && name.ends_with(".png")
            && name.len() == "my_photo_.png".len() + 9,
        "{name}"
    );
    assert_eq!(b["filePath"], format!("/{name}"));
    assert_eq!(b["fileType"], "image");
    assert_eq!(b["width"], 256);
    assert!(b["url"].as_str().unwrap().ends_with(&format!("/{name}")));
    assert!(b["versionInfo"]["name"].is_string() && b["thumbnailUrl"].is_string());
    // Fixed name: a retry replaces the same file.
    let fixed = || {
        Form::new()
            .part("file", png_part("v.png"))
            .text("fileName", "v.png")
            .text("folder", "/venues/bar-1/")
            .text("useUniqueFileName", "false")
            .text("overwriteFile", "true")
            .text("tags", "google_places, venue:bar-1")
    };
    let (_, _, first) = post(&fake, Some(&auth), fixed()).await;
    let (_, _, second) = post(&fake, Some(&auth), fixed()).await;
    assert_eq!(first["filePath"], "/venues/bar-1/v.png");
    assert_eq!(first["fileId"], second["fileId"]);
    assert_eq!(second["versionInfo"]["name"], "Version 2");
    let files = fake.files();
    let f = &files["/venues/bar-1/v.png"];
    assert_eq!(
        (f.versions, f.tags.clone()),
        (
            2,
            vec!["google_places".to_string(), "venue:bar-1".to_string()]
        )
    );
    assert_eq!(image::name_of(&f.bytes).as_deref(), Some("v.png"));
    // Both overwrite and unique off: a clash is a 400.
    let (s, _, b) = post(
        &fake,
        Some(&auth),
        Form::new()
            .part("file", png_part("v.png"))
            .text("fileName", "v.png")
            .text("folder", "/venues/bar-1")
            .text("useUniqueFileName", "false")
            .text("overwriteFile", "false"),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    // base64 and data URIs are files too.
    let raw = image::personalise(&image::noise_png(1), "b64");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    for file in [b64.clone(), format!("data:image/png;base64,{b64}")] {
        let (s, _, b) = post(
            &fake,
            Some(&auth),
            Form::new()
                .text("file", file)
                .text("fileName", "b.png")
                .text("useUniqueFileName", "false"),
        )
        .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["size"], raw.len());
    }
}

#[tokio::test]
async fn imagekit_size_limit_is_a_400_and_rate_limit_a_429() {
    let fake = ik(ImageKitConfig {
        max_file_bytes: 4 * 1024,
        rate_limit: Some((2, Duration::from_secs(30))),
        ..ImageKitConfig::default()
    })
    .await;
    let auth = basic(fake.private_key());
    let big = Part::bytes(image::noise_png(8).to_vec()).file_name("big.png");
    let (s, _, b) = post(
        &fake,
        Some(&auth),
        Form::new().part("file", big).text("fileName", "big.png"),
    )
    .await;
    assert_eq!(s, 400, "never 413");
    assert_eq!(
        b["message"],
        "Your request contains invalid file parameter. The file size exceeds limits."
    );
    let small = || {
        Form::new()
            .part(
                "file",
                Part::bytes(image::noise_png(1).to_vec()).file_name("s.png"),
            )
            .text("fileName", "s.png")
    };
    assert_eq!(post(&fake, Some(&auth), small()).await.0, 200);
    let (s, h, _) = post(&fake, Some(&auth), small()).await;
    assert_eq!(s, 429);
    assert_eq!(h["x-ratelimit-limit"], "2");
    let reset: u64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
    assert!(reset > 20_000 && reset <= 30_000, "{reset} ms");
    assert_eq!(h["x-ratelimit-interval"], "30000");
}

fn client(fake: &FakeImageKit, key: &str) -> ImageKit {
    ImageKit::new(venue_image_uploader::imagekit::ImageKitConfig {
        upload_url: fake.upload_url(),
        private_key: key.into(),
        timeout: Duration::from_secs(10),
        retry_base: Duration::from_millis(20),
        ..Default::default()
    })
    .unwrap()
}

fn request(bytes: bytes::Bytes) -> UploadRequest<'static> {
    UploadRequest {
        bytes,
        file_name: "abc.png",
        folder: "/venues/v-1",
        tags: vec!["foursquare".into(), "venue:v-1".into()],
        mime: "image/png",
    }
}

#[tokio::test]
async fn uploader_client_against_the_fake() {
    let fake = ik(ImageKitConfig::default()).await;
    let c = client(&fake, fake.private_key());
    c.check_credentials().await.unwrap();
    let bytes = image::personalise(&image::noise_png(4), "abc");
    let u = c.upload(request(bytes.clone())).await.unwrap();
    assert_eq!(u.file_path, "/venues/v-1/abc.png");
    assert!(u.request_id.is_some());
    assert_eq!(fake.files()["/venues/v-1/abc.png"].bytes, bytes);
    assert_eq!(
        fake.files()["/venues/v-1/abc.png"].content_type.as_deref(),
        Some("image/png")
    );
    // Transient faults are retried inside the client (like the SDKs)...
    fake.push_fault(Fault::Status(503));
    fake.push_fault(Fault::Status(500));
    let again = c.upload(request(bytes.clone())).await.unwrap();
    assert_eq!(again.file_id, u.file_id, "a retry overwrites the same file");
    // ...a cut response after the store is retried and still one file.
    fake.push_fault(Fault::ResetAfterStore);
    c.upload(request(bytes.clone())).await.unwrap();
    assert_eq!(fake.files().len(), 1);
    // ...a long rate limit is handed back for the worker to pause ImageKit.
    fake.push_fault(Fault::RateLimited(Duration::from_secs(40)));
    let f = c.upload(request(bytes.clone())).await.unwrap_err();
    assert_eq!(
        (f.error_type, f.retry_after),
        (ErrorType::RateLimited, Some(Duration::from_secs(40)))
    );
    // A wrong key is the service's fault, not the image's.
    let f = client(&fake, "private_wrong")
        .upload(request(bytes))
        .await
        .unwrap_err();
    assert_eq!(
        (f.error_type, f.scope, f.stage),
        (ErrorType::AuthError, Scope::Service, Stage::Upload)
    );
    assert!(client(&fake, "private_wrong")
        .check_credentials()
        .await
        .is_err());
}

#[tokio::test]
async fn every_provider_route_maps_to_its_error_type() {
    let p = FakeProvider::start(ProviderConfig {
        image_kb: 8,
        slow: Duration::from_secs(5),
        oversize_bytes: 2 * 1024 * 1024,
        ..ProviderConfig::default()
    })
    .await
    .unwrap();
    let f = Fetcher::new(FetchConfig {
        allow_loopback: true,
        total_timeout: Duration::from_secs(2),
        max_bytes: 1024 * 1024,
        max_redirects: 3,
        ..FetchConfig::default()
    })
    .unwrap();
    let b = p.base_url();
    let ok = f
        .fetch(&format!("{b}/foursquare/img/n1.png"))
        .await
        .unwrap();
    assert_eq!(ok.bytes, p.image_bytes("n1"));
    let g = f
        .fetch(&format!(
            "{b}/google_places/maps/api/place/photo?maxwidth=1600&photo_reference=R1&key=SECRET123"
        ))
        .await
        .unwrap();
    assert_eq!(g.bytes, p.image_bytes("R1"));
    assert!(!g.final_url.contains("SECRET123"));
    let cases: Vec<(String, ErrorType, Option<u16>)> = vec![
        (
            format!("{b}/google_places/maps/api/place/photo?photo_reference=R1"),
            ErrorType::Forbidden,
            Some(403),
        ),
        (
            format!("{b}/google_places/maps/api/place/photo?key=K"),
            ErrorType::HttpError,
            Some(400),
        ),
        (
            format!("{b}/here/status/404/a.png"),
            ErrorType::NotFound,
            Some(404),
        ),
        (
            format!("{b}/here/status/403/a.png"),
            ErrorType::Forbidden,
            Some(403),
        ),
        (
            format!("{b}/here/status/429/a.png"),
            ErrorType::RateLimited,
            Some(429),
        ),
        (
            format!("{b}/here/status/502/a.png"),
            ErrorType::BadGateway,
            Some(502),
        ),
        (
            format!("{b}/here/status/504/a.png"),
            ErrorType::GatewayTimeout,
            Some(504),
        ),
        (
            format!("{b}/here/redirect/4/a.png"),
            ErrorType::HttpError,
            Some(302),
        ),
        (
            format!("{b}/here/slow-headers/a.png"),
            ErrorType::NetworkTimeout,
            None,
        ),
        (
            format!("{b}/here/drip/a.png"),
            ErrorType::NetworkTimeout,
            None,
        ),
        (
            format!("{b}/here/truncated/a.png"),
            ErrorType::NetworkError,
            None,
        ),
        (
            format!("{b}/here/lying-length/a.png"),
            ErrorType::DownloadFailed,
            None,
        ),
        (format!("{b}/here/html/a.png"), ErrorType::NotAnImage, None),
        (
            format!("{b}/here/oversize/a.png"),
            ErrorType::FileTooLarge,
            None,
        ),
        (
            format!("{b}/here/oversize-chunked/a.png"),
            ErrorType::FileTooLarge,
            None,
        ),
    ];
    for (url, t, status) in cases {
        let e = f.fetch(&url).await.expect_err(&url);
        assert_eq!((e.error_type, e.status_code), (t, status), "{url}: {e}");
        assert!(!e.message.contains("SECRET"), "{e}");
    }
    let e = f
        .fetch(&format!("{b}/here/status/503/a.png"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.error_type, e.retry_after),
        (ErrorType::ServiceUnavailable, Some(Duration::from_secs(1)))
    );
    // Flaky: the first two requests fail, the third serves.
    let url = format!("{b}/here/flaky/2/503/fl.png");
    assert!(f.fetch(&url).await.is_err());
    assert!(f.fetch(&url).await.is_err());
    assert_eq!(f.fetch(&url).await.unwrap().bytes, p.image_bytes("fl"));
    assert!(p.max_in_window("here", Duration::from_secs(60)) >= 3);
    assert_eq!(p.max_in_window("nobody", Duration::from_secs(1)), 0);
}
