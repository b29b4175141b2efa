use super::*;
use proptest::prelude::*;

/// PostgreSQL's `pglz_decompress` transcribed as literally as safe Rust allows (one byte
/// at a time, overlapping copies doubling as in the C), with `check_complete`.
fn reference(src: &[u8], raw: usize) -> Result<Vec<u8>, Corrupt> {
    let mut out: Vec<u8> = Vec::new();
    let mut sp = 0usize;
    while sp < src.len() && out.len() < raw {
        let mut ctrl = src[sp];
        sp += 1;
        let mut c = 0;
        while c < 8 && sp < src.len() && out.len() < raw {
            if ctrl & 1 == 1 {
                let b0 = *src.get(sp).ok_or(Corrupt)?;
                let b1 = *src.get(sp + 1).ok_or(Corrupt)?;
                let mut len = (b0 & 0x0f) as usize + 3;
                let mut off = (((b0 & 0xf0) as usize) << 4) | b1 as usize;
                sp += 2;
                if len == 18 {
                    len += *src.get(sp).ok_or(Corrupt)? as usize;
                    sp += 1;
                }
                if off == 0 || off > out.len() {
                    return Err(Corrupt);
                }
                len = len.min(raw - out.len());
                while off < len {
                    let from = out.len() - off;
                    out.extend_from_within(from..from + off);
                    len -= off;
                    off += off;
                }
                let from = out.len() - off;
                out.extend_from_within(from..from + len);
            } else {
                out.push(src[sp]);
                sp += 1;
            }
            ctrl >>= 1;
            c += 1;
        }
    }
    if out.len() == raw && sp == src.len() {
        Ok(out)
    } else {
        Err(Corrupt)
    }
}

/// A small greedy pglz compressor (brute-force match search), to make valid streams with
/// every kind of item: literals, short and long tags, overlapping runs.
fn compress(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let ctrl_at = out.len();
        out.push(0u8);
        for bit in 0..8 {
            if i >= data.len() {
                break;
            }
            let (mut best_len, mut best_off) = (0, 0);
            for off in 1..=i.min(4095) {
                let mut l = 0;
                while l < 273 && i + l < data.len() && data[i + l] == data[i + l - off] {
                    l += 1;
                }
                if l > best_len {
                    (best_len, best_off) = (l, off);
                }
            }
            if best_len >= 3 {
                out[ctrl_at] |= 1 << bit;
                let nib = (best_len - 3).min(15) as u8;
                out.push(nib | (((best_off >> 8) as u8) << 4));
                out.push((best_off & 0xff) as u8);
                if best_len >= 18 {
                    out.push((best_len - 18) as u8);
                }
                i += best_len;
            } else {
                out.push(data[i]);
                i += 1;
            }
        }
    }
    out
}

/// An inline-compressed varlena holding `stream` that inflates to `raw` bytes.
fn datum(stream: &[u8], raw: usize, method: u32) -> Vec<u8> {
    let total = stream.len() + 8;
    let mut d = ((total as u32) << 2 | 0x02).to_ne_bytes().to_vec();
    d.extend_from_slice(&((raw as u32) | (method << 30)).to_ne_bytes());
    d.extend_from_slice(stream);
    d
}

fn inflate(stream: &[u8], raw: usize) -> Result<Vec<u8>, Corrupt> {
    let mut inf = Inflater::default();
    let v = inf.inflate(&datum(stream, raw, 0))?.expect("pglz");
    assert_eq!(&v[..4], &(((raw + 4) as u32) << 2).to_ne_bytes());
    Ok(v[4..].to_vec())
}

/// Text shaped like the venues' JSON: repeated keys and URL prefixes.
fn jsonish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{\"provider\": \"google_places\", ".to_vec()),
        Just(b"\"upload_status\": \"uploaded\"}".to_vec()),
        Just(b"https://maps.googleapis.com/maps/api/place/photo?ref=".to_vec()),
        Just(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_vec()),
        Just(b"ab".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn round_trips_valid_streams(data in jsonish()) {
        let stream = compress(&data);
        prop_assert_eq!(reference(&stream, data.len()), Ok(data.clone()));
        prop_assert_eq!(inflate(&stream, data.len()), Ok(data));
    }

    /// On any bytes, the same answer as PostgreSQL's loop: the same output, or corrupt.
    #[test]
    fn agrees_with_the_reference_on_any_stream(
        stream in proptest::collection::vec(any::<u8>(), 0..300),
        raw in 0usize..2000,
    ) {
        prop_assert_eq!(inflate(&stream, raw), reference(&stream, raw));
    }

    /// Valid streams with one byte changed or cut short: still the reference's answer.
    #[test]
    fn agrees_on_damaged_streams(data in jsonish(), at in any::<usize>(), b in any::<u8>(), cut in any::<bool>()) {
        let mut stream = compress(&data);
        if !stream.is_empty() {
            let i = at % stream.len();
            if cut { stream.truncate(i) } else { stream[i] = b }
        }
        prop_assert_eq!(inflate(&stream, data.len()), reference(&stream, data.len()));
    }
}

#[test]
fn overlapping_runs_repeat_their_pattern() {
    // "abc" then a tag: length 18 + 200, offset 3 (a run of the 3-byte pattern).
    let stream = [0b0000_1000, b'a', b'b', b'c', 0x0f, 0x03, 200];
    let want: Vec<u8> = b"abc".iter().cycle().take(221).copied().collect();
    assert_eq!(inflate(&stream, 221), Ok(want.clone()));
    assert_eq!(reference(&stream, 221), Ok(want));
}

#[test]
fn rejects_what_postgres_rejects() {
    // Offset 0.
    assert_eq!(inflate(&[0b10, b'a', 0x00, 0x00], 4), Err(Corrupt));
    // Offset past the start of the output.
    assert_eq!(inflate(&[0b10, b'a', 0x00, 0x02], 4), Err(Corrupt));
    // A tag cut after its first byte.
    assert_eq!(inflate(&[0b10, b'a', 0x00], 4), Err(Corrupt));
    // Output shorter than announced.
    assert_eq!(inflate(&[0, b'a', b'b'], 3), Err(Corrupt));
    // Input left over once the output is complete.
    assert_eq!(inflate(&[0, b'a', b'b', b'c'], 2), Err(Corrupt));
    // A header that does not describe the bytes.
    let mut d = datum(&[0, b'a'], 1, 0);
    d.push(0);
    assert_eq!(Inflater::default().inflate(&d), Err(Corrupt));
    assert_eq!(Inflater::default().inflate(&[0x02, 0, 0]), Err(Corrupt));
}

#[test]
fn leaves_other_methods_and_huge_values_to_postgres() {
    let lz4 = datum(&[0, b'a'], 1, 1);
    assert_eq!(Inflater::default().inflate(&lz4), Ok(None));
    let huge = datum(&[0, b'a'], MAX_RAW + 1, 0);
    assert_eq!(Inflater::default().inflate(&huge), Ok(None));
}

#[test]
fn the_buffer_is_reused_across_values_of_different_sizes() {
    let mut inf = Inflater::default();
    for data in [vec![7u8; 3000], b"xyz".to_vec(), vec![1u8; 50]] {
        let stream = compress(&data);
        let v = inf
            .inflate(&datum(&stream, data.len(), 0))
            .unwrap()
            .unwrap();
        assert_eq!(&v[4..], &data[..]);
    }
}

/// The stream of `n` copies of `byte`: one literal, then back-references of the longest
/// kind (273 bytes for 3 bytes of stream), the densest stream pglz has.
fn run_of(byte: u8, n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut made = 0usize;
    let mut items: Vec<Vec<u8>> = Vec::new();
    if n > 0 {
        items.push(vec![byte]);
        made = 1;
    }
    while made < n {
        let len = (n - made).min(273);
        if len < 3 {
            items.extend(std::iter::repeat_n(vec![byte], len));
        } else if len < 18 {
            items.push(vec![(len - 3) as u8, 1]);
        } else {
            items.push(vec![0x0f, 1, (len - 18) as u8]);
        }
        made += len;
    }
    for group in items.chunks(8) {
        let ctrl =
            group.iter().enumerate().fold(
                0u8,
                |c, (bit, item)| if item.len() > 1 { c | 1 << bit } else { c },
            );
        out.push(ctrl);
        for item in group {
            out.extend_from_slice(item);
        }
    }
    out
}

/// Fills the decoder's buffer with `garbage` (any length, any bytes), as if earlier rows
/// had left it there.
fn dirty(garbage: &[u8]) -> Inflater {
    Inflater {
        buf: garbage.to_vec(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// The buffer is reused from row to row and never cleared: whatever is left in it,
    /// each value inflates to what a fresh decoder and the reference give (corrupt
    /// streams included).
    #[test]
    fn leftovers_in_the_reused_buffer_never_show(
        values in proptest::collection::vec((jsonish(), any::<bool>(), any::<usize>(), any::<u8>()), 1..6),
        garbage in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6000), 6),
    ) {
        let mut reused = Inflater::default();
        for (k, (data, damage, at, b)) in values.iter().enumerate() {
            let mut stream = compress(data);
            if *damage && !stream.is_empty() {
                let i = at % stream.len();
                stream[i] = *b;
            }
            let d = datum(&stream, data.len(), 0);
            let want = reference(&stream, data.len());
            let fresh = Inflater::default().inflate(&d).map(|o| o.map(|v| v[4..].to_vec()));
            prop_assert_eq!(&fresh, &want.clone().map(Some));
            // A decoder that has just inflated other values, and one full of garbage.
            let again = reused.inflate(&d).map(|o| o.map(|v| v[4..].to_vec()));
            prop_assert_eq!(&again, &fresh);
            let mut dirty = dirty(&garbage[k % garbage.len()]);
            let got = dirty.inflate(&d).map(|o| o.map(|v| v[4..].to_vec()));
            prop_assert_eq!(&got, &fresh);
            // Overwrite what the reused decoder holds with garbage before the next row.
            let g = &garbage[(k + 1) % garbage.len()];
            let n = reused.buf.len().min(g.len());
            reused.buf[..n].copy_from_slice(&g[..n]);
        }
    }
}

/// The 1 MiB fallback stays, and is tested: values inflating to more than [`MAX_RAW`]
/// are left to PostgreSQL, so the buffer kept from row to row never grows past it.
///
/// Inline values cannot reach it with the default 8 kB pages: a heap tuple holds at most
/// 8,160 bytes, and the densest stream (a run, below) needs more than that for 1 MiB.
/// They can with 16 or 32 kB pages (a build option): 32 kB of stream inflate to about
/// 2.8 MB. And the raw size is read from the datum's header, which says up to 1 GB.
#[test]
fn values_up_to_max_raw_inflate_and_larger_ones_are_left_to_postgres() {
    assert!(
        run_of(b'x', MAX_RAW).len() > 8160,
        "no 8 kB page holds 1 MiB inline"
    );
    assert!(run_of(b'x', MAX_RAW).len() < 32_000, "a 32 kB page can");

    let mut inf = Inflater::default();
    let at_limit = run_of(b'x', MAX_RAW);
    let v = inf
        .inflate(&datum(&at_limit, MAX_RAW, 0))
        .unwrap()
        .expect("MAX_RAW bytes are inflated here");
    assert_eq!(v.len(), MAX_RAW + 4);
    assert!(v[4..].iter().all(|&b| b == b'x'));
    assert_eq!(reference(&at_limit, MAX_RAW).unwrap().len(), MAX_RAW);
    let kept = inf.buf.len();
    assert_eq!(kept, MAX_RAW + 4 + SLACK);

    // One byte more: a valid stream, left to PostgreSQL; the buffer does not grow.
    let over = run_of(b'y', MAX_RAW + 1);
    assert_eq!(reference(&over, MAX_RAW + 1).unwrap().len(), MAX_RAW + 1);
    assert_eq!(inf.inflate(&datum(&over, MAX_RAW + 1, 0)), Ok(None));
    assert_eq!(inf.buf.len(), kept);
    // The raw size a header may claim (30 bits): left to PostgreSQL, nothing allocated.
    let mut fresh = Inflater::default();
    assert_eq!(fresh.inflate(&datum(&over, 0x3FFF_FFFF, 0)), Ok(None));
    assert!(fresh.buf.is_empty());
    // And the same decoder still inflates small values afterwards.
    let small = compress(b"{\"a\": 1}");
    assert_eq!(
        inf.inflate(&datum(&small, 8, 0))
            .unwrap()
            .map(|v| v[4..].to_vec()),
        Some(b"{\"a\": 1}".to_vec())
    );
}
