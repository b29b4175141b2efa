//! Deterministic test images: one noise PNG of a chosen size, personalised per name with
//! a `tEXt` chunk so every URL serves different (and checkable) bytes.

use bytes::{Bytes, BytesMut};
use rand::{RngExt, SeedableRng};

/// A valid PNG of about `kb` kilobytes (incompressible noise, so the size holds).
pub fn noise_png(kb: usize) -> Bytes {
    let width = 256u32;
    let height = ((kb.max(1) * 1024) / (width as usize * 3)).max(1) as u32;
    let mut rng = rand::rngs::StdRng::seed_from_u64(kb as u64);
    let mut pixels = vec![0u8; (width * height * 3) as usize];
    rng.fill(&mut pixels[..]);
    let mut out = Vec::with_capacity(pixels.len() + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, width, height);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut w = enc.write_header().expect("png header");
        w.write_image_data(&pixels).expect("png data");
    }
    Bytes::from(out)
}

/// `base` with a `tEXt` chunk `fake-name\0{name}` inserted before `IEND`.
pub fn personalise(base: &[u8], name: &str) -> Bytes {
    let iend = base.len() - 12;
    let mut data = b"fake-name\0".to_vec();
    data.extend_from_slice(name.as_bytes());
    let mut out = BytesMut::with_capacity(base.len() + data.len() + 12);
    out.extend_from_slice(&base[..iend]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut chunk = b"tEXt".to_vec();
    chunk.extend_from_slice(&data);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    out.extend_from_slice(&base[iend..]);
    out.freeze()
}

/// The name inside a personalised PNG.
pub fn name_of(png: &[u8]) -> Option<String> {
    let i = png.windows(14).position(|w| w == b"tEXtfake-name\0")?;
    let len = u32::from_be_bytes(png.get(i - 4..i)?.try_into().ok()?) as usize;
    let text = png.get(i + 14..i + 4 + len)?;
    String::from_utf8(text.to_vec()).ok()
}

/// Width and height of a PNG, GIF or JPEG, read from its header.
pub fn dimensions(b: &[u8]) -> Option<(u32, u32)> {
    if b.len() >= 24 && b.starts_with(b"\x89PNG\r\n\x1a\n") {
        let w = u32::from_be_bytes(b[16..20].try_into().ok()?);
        let h = u32::from_be_bytes(b[20..24].try_into().ok()?);
        return Some((w, h));
    }
    if b.len() >= 10 && (b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a")) {
        return Some((
            u16::from_le_bytes([b[6], b[7]]) as u32,
            u16::from_le_bytes([b[8], b[9]]) as u32,
        ));
    }
    if b.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        while i + 9 < b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
                let h = u16::from_be_bytes([b[i + 5], b[i + 6]]) as u32;
                let w = u16::from_be_bytes([b[i + 7], b[i + 8]]) as u32;
                return Some((w, h));
            }
            i += 2 + len;
        }
    }
    None
}

/// Is it an image at all (magic bytes)?
pub fn is_image(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
        || b.starts_with(&[0xFF, 0xD8, 0xFF])
        || b.starts_with(b"GIF8")
        || (b.len() >= 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP")
}

/// The small PNG error tile Google sends with a 403.
pub fn error_tile() -> Bytes {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, 16, 16);
        enc.set_color(png::ColorType::Grayscale);
        let mut w = enc.write_header().expect("png header");
        w.write_image_data(&[0x80; 256]).expect("png data");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn personalised_pngs_decode_and_carry_their_name() {
        let base = noise_png(20);
        assert!((18_000..26_000).contains(&base.len()), "{}", base.len());
        let p = personalise(&base, "v1-2");
        assert_eq!(name_of(&p).as_deref(), Some("v1-2"));
        let dec = png::Decoder::new(std::io::Cursor::new(p.to_vec()));
        let mut r = dec.read_info().expect("valid png");
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        r.next_frame(&mut buf).expect("frame");
        assert_eq!(dimensions(&p), Some((256, (20 * 1024) / (256 * 3))));
        assert!(is_image(&error_tile()));
    }
}
