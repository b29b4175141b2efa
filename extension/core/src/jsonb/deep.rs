//! Test helpers: deeply nested jsonb values, built without recursion, and a runner with a
//! small machine stack to show that a walk's stack use does not grow with the depth.

use super::{JB_FARRAY, JB_FOBJECT, JENTRY_HAS_OFF, JENTRY_ISCONTAINER, JENTRY_ISSTRING};

/// The stack of [`on_small_stack`]'s thread: 256 KiB, an eighth of PostgreSQL's default
/// `max_stack_depth`.
pub(crate) const SMALL_STACK: usize = 256 * 1024;

/// Runs `f` on a thread with a [`SMALL_STACK`] and returns its result. A walk that
/// recursed once per level would overflow it (and abort the test binary) long before
/// 10,000 levels.
pub(crate) fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn a test thread")
        .join()
        .expect("the test thread panicked")
}

fn varlena(container: Vec<u8>) -> Vec<u8> {
    let mut out = (((container.len() + 4) as u32) << 2).to_ne_bytes().to_vec();
    out.extend(container);
    out
}

/// `depth` nested arrays, `[[…[]…]]`, as a complete jsonb varlena (the bytes
/// PostgreSQL stores for `repeat('[', depth) || repeat(']', depth)`).
pub(crate) fn nested_arrays(depth: usize) -> Vec<u8> {
    assert!(depth >= 1);
    let mut out = Vec::with_capacity(8 * depth);
    for r in (2..=depth).rev() {
        // The child holds r - 1 levels: 8 bytes per level but the innermost (4).
        let child = 8 * (r - 2) + 4;
        out.extend_from_slice(&(JB_FARRAY | 1).to_ne_bytes());
        out.extend_from_slice(&(JENTRY_ISCONTAINER | JENTRY_HAS_OFF | child as u32).to_ne_bytes());
    }
    out.extend_from_slice(&JB_FARRAY.to_ne_bytes());
    varlena(out)
}

/// `depth` nested objects, `{"a": {"a": … {} …}}`, as a complete jsonb varlena.
pub(crate) fn nested_objects(depth: usize) -> Vec<u8> {
    assert!(depth >= 1);
    let mut out = Vec::with_capacity(16 * depth);
    for r in (2..=depth).rev() {
        // Header, two JEntries, the key "a" and 3 bytes of padding per level.
        let child = 16 * (r - 2) + 4;
        out.extend_from_slice(&(JB_FOBJECT | 1).to_ne_bytes());
        out.extend_from_slice(&(JENTRY_ISSTRING | JENTRY_HAS_OFF | 1).to_ne_bytes());
        out.extend_from_slice(&(JENTRY_ISCONTAINER | (3 + child) as u32).to_ne_bytes());
        out.extend_from_slice(b"a\0\0\0");
    }
    out.extend_from_slice(&JB_FOBJECT.to_ne_bytes());
    varlena(out)
}

/// The JSON text of [`nested_arrays`], as `jsonb_out` prints it.
pub(crate) fn arrays_text(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// The JSON text of [`nested_objects`], as `jsonb_out` prints it.
pub(crate) fn objects_text(depth: usize) -> String {
    "{\"a\": ".repeat(depth - 1) + "{}" + &"}".repeat(depth - 1)
}
