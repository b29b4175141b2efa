//! Table-level analytics in one pass. Every row of the venues table is fed to a state
//! ([`Stats`] for the summary and breakdown, [`VenueList`] for venue lists); states built
//! by parallel workers are merged ([`Stats::merge`], [`VenueList::merge`]) after crossing
//! process boundaries as bytes ([`Stats::encode`] / [`Stats::decode`]).
//!
//! Table-level functions never abort on bad data: a NULL or non-array value counts as no
//! images, non-object elements are ignored, and both are counted in [`Health`]. Keys are
//! read with the semantics of SQL's `->>` (a non-string scalar reads as its JSON text),
//! so on any data the counts equal those of the original's plain SQL.

use crate::classify::{Classifier, ErrorClass};
use crate::image::Status;
use crate::jsonb::Malformed;
use crate::jsonb::{parse_varlena, short_eq, value_to_text, Container, KeyHint, Kind, Value};
use crate::scores::{failure_rate_tenths, mean_rate_pct};
use crate::wire::{Reader, Writer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

/// Interned id of SQL NULL.
pub const NULL_ID: u32 = u32::MAX;

/// What the scan met that was not a well-formed image array.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Rows read.
    pub rows: i64,
    /// Rows whose images value is SQL NULL.
    pub null_values: i64,
    /// Rows whose value is valid jsonb but not an array (object, string, number...).
    pub non_array_values: i64,
    /// Array elements that are not objects.
    pub non_object_elements: i64,
    /// Values whose bytes are not valid jsonb (should never happen; counted, skipped).
    pub malformed_values: i64,
}

impl Health {
    /// Adds another scan's counts (from a parallel worker).
    pub fn merge(&mut self, o: &Health) {
        self.rows += o.rows;
        self.null_values += o.null_values;
        self.non_array_values += o.non_array_values;
        self.non_object_elements += o.non_object_elements;
        self.malformed_values += o.malformed_values;
    }
}

/// Per-row counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowScan {
    /// Image objects.
    pub total: i64,
    /// `failed` + `permanently_failed`.
    pub failed: i64,
    /// `uploaded`.
    pub uploaded: i64,
    /// Some failed image has a transient error type.
    pub transient: bool,
    /// ... a permanent one.
    pub permanent: bool,
    /// ... an ambiguous one.
    pub ambiguous: bool,
}

impl RowScan {
    /// Failure rate in tenths of a percent over all image objects.
    pub fn rate_tenths(&self) -> i64 {
        failure_rate_tenths(self.failed, self.total)
    }
}

/// Strings seen in `provider` / `error_type`, each stored once.
struct Interner {
    ids: HashMap<Vec<u8>, u32>,
    names: Vec<Vec<u8>>,
    classes: Vec<ErrorClass>,
    /// Recently interned ids by [`quick_hash`] of their bytes (id + 1; 0 is empty),
    /// checked against `names`: two ways per bucket, the latest first. A scan meets a
    /// handful of providers and error types over and over: almost every lookup ends
    /// here, and only a miss hashes the bytes with `ids`' SipHash (which keeps any data,
    /// however crafted, at its usual cost).
    recent: Vec<[u32; 2]>,
}

/// Buckets of [`Interner::recent`].
const RECENT: usize = 128;

impl Default for Interner {
    fn default() -> Self {
        Interner {
            ids: HashMap::new(),
            names: Vec::new(),
            classes: Vec::new(),
            recent: vec![[0; 2]; RECENT],
        }
    }
}

/// A bucket of [`Interner::recent`] for `b`: its length and its first and last 8 bytes,
/// mixed by one multiplication.
#[inline(always)]
fn quick_hash(b: &[u8]) -> usize {
    let n = b.len();
    let (head, tail) = match (b.first_chunk::<8>(), b.last_chunk::<8>()) {
        (Some(h), Some(t)) => (u64::from_le_bytes(*h), u64::from_le_bytes(*t)),
        _ => (b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64), 0),
    };
    let x = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 57) as usize % RECENT
}

impl Interner {
    #[inline(always)]
    fn intern(&mut self, b: &[u8], classifier: &Classifier) -> u32 {
        let bucket = quick_hash(b);
        for way in self.recent[bucket] {
            if let Some(id) = way.checked_sub(1) {
                if short_eq(&self.names[id as usize], b) {
                    return id;
                }
            }
        }
        let id = self.intern_slow(b, classifier);
        let ways = &mut self.recent[bucket];
        *ways = [id + 1, ways[0]];
        id
    }

    #[inline(never)]
    fn intern_slow(&mut self, b: &[u8], classifier: &Classifier) -> u32 {
        if let Some(&id) = self.ids.get(b) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(b.to_vec(), id);
        self.names.push(b.to_vec());
        self.classes.push(classifier.classify_bytes(Some(b)));
        id
    }

    fn name(&self, id: u32) -> Option<&[u8]> {
        (id != NULL_ID).then(|| self.names[id as usize].as_slice())
    }

    fn class(&self, id: u32) -> ErrorClass {
        if id == NULL_ID {
            ErrorClass::Unknown
        } else {
            self.classes[id as usize]
        }
    }
}

/// Hashes the interned ids of the breakdown's (provider, error type) pairs: ids are
/// small numbers the interner hands out, so one multiplication mixes them well enough
/// (SipHash was a third of the cost of a failed image).
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }

    #[inline(always)]
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64);
    }

    #[inline(always)]
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(26) ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Counts by (provider id, error type id).
type PairCounts = HashMap<(u32, u32), i64, std::hash::BuildHasherDefault<IdHasher>>;

/// Where the keys a scan reads sat in the previous image (see [`Container::get_hinted`]).
#[derive(Default, Clone, Copy)]
struct Hints {
    status: KeyHint,
    details: KeyHint,
    error_type: KeyHint,
    provider: KeyHint,
}

/// `obj->>'key'` as bytes: strings as they are, other scalars and containers as JSON text.
#[inline(always)]
fn text_of<'a>(v: Option<Value<'a>>) -> Option<Cow<'a, [u8]>> {
    match v? {
        Value::Null => None,
        Value::String(b) => Some(Cow::Borrowed(b)),
        other => value_to_text(&other)
            .ok()
            .map(|s| Cow::Owned(s.into_bytes())),
    }
}

/// `img->'error_details'->>'error_type'`.
#[inline(always)]
fn error_type_of<'a>(obj: &Container<'a>, hints: &mut Hints) -> Option<Cow<'a, [u8]>> {
    let details = obj.get_hinted("error_details", &mut hints.details).ok()??;
    let details = details.as_object()?;
    text_of(
        details
            .get_hinted("error_type", &mut hints.error_type)
            .ok()?,
    )
}

/// Status by `->>` semantics: only a string can equal a status name.
#[inline(always)]
fn status_of(obj: &Container<'_>, hint: &mut KeyHint) -> Status {
    match obj.get_hinted("upload_status", hint) {
        Ok(Some(Value::String(b))) => status_named(b),
        _ => Status::Other,
    }
}

/// [`Status::from_bytes`] of a present string, deciding by its length which one spelling
/// to compare it with (the three have different lengths).
#[inline(always)]
fn status_named(b: &[u8]) -> Status {
    const UPLOADED: usize = Status::Uploaded.as_str().len();
    const FAILED: usize = Status::Failed.as_str().len();
    const PERMANENTLY_FAILED: usize = Status::PermanentlyFailed.as_str().len();
    const _DISTINCT: () = assert!(
        UPLOADED != FAILED && UPLOADED != PERMANENTLY_FAILED && FAILED != PERMANENTLY_FAILED
    );
    let candidate = match b.len() {
        UPLOADED => Status::Uploaded,
        FAILED => Status::Failed,
        PERMANENTLY_FAILED => Status::PermanentlyFailed,
        _ => return Status::Other,
    };
    if short_eq(candidate.as_str().as_bytes(), b) {
        candidate
    } else {
        Status::Other
    }
}

/// One row of `venue_image_failure_breakdown`.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakdownRow {
    /// `img->>'provider'`.
    pub provider: Option<String>,
    /// `img->'error_details'->>'error_type'`.
    pub error_type: Option<String>,
    /// Class of the error type.
    pub error_class: ErrorClass,
    /// Failed images.
    pub count: i64,
}

/// Reads rows, classifies failed images, and keeps the failure breakdown.
pub struct Scanner {
    classifier: Classifier,
    interner: Interner,
    breakdown: PairCounts,
    hints: Hints,
    /// What the scan met.
    pub health: Health,
}

impl Scanner {
    /// A scanner using `classifier` for error classes.
    pub fn new(classifier: Classifier) -> Self {
        Scanner {
            classifier,
            interner: Interner::default(),
            breakdown: PairCounts::default(),
            hints: Hints::default(),
            health: Health::default(),
        }
    }

    /// The array in a jsonb datum, counting NULL, non-array and malformed values.
    pub fn array<'a>(&mut self, images: Option<&'a [u8]>) -> Option<Container<'a>> {
        self.health.rows += 1;
        let Some(bytes) = images else {
            self.health.null_values += 1;
            return None;
        };
        match parse_varlena(bytes) {
            Ok(c) if c.kind() == Kind::Array => Some(c),
            Ok(_) => {
                self.health.non_array_values += 1;
                None
            }
            Err(_) => {
                self.health.malformed_values += 1;
                None
            }
        }
    }

    /// Counts one row's images. With `breakdown`, failed images are also tallied by
    /// (provider, error type).
    pub fn scan(&mut self, images: Option<&[u8]>, breakdown: bool) -> RowScan {
        let mut r = RowScan::default();
        let Some(arr) = self.array(images) else {
            return r;
        };
        for e in arr.elements() {
            let obj = match e {
                Ok(Value::Container(c)) if c.is_object() => c,
                Ok(_) => {
                    self.health.non_object_elements += 1;
                    continue;
                }
                Err(_) => {
                    self.health.malformed_values += 1;
                    break;
                }
            };
            r.total += 1;
            match status_of(&obj, &mut self.hints.status) {
                Status::Uploaded => r.uploaded += 1,
                Status::Failed | Status::PermanentlyFailed => {
                    r.failed += 1;
                    let et = error_type_of(&obj, &mut self.hints);
                    let et_id = match &et {
                        Some(b) => self.interner.intern(b, &self.classifier),
                        None => NULL_ID,
                    };
                    match self.interner.class(et_id) {
                        ErrorClass::Transient => r.transient = true,
                        ErrorClass::Permanent => r.permanent = true,
                        ErrorClass::Ambiguous => r.ambiguous = true,
                        ErrorClass::Unknown => {}
                    }
                    if breakdown {
                        let provider = text_of(
                            obj.get_hinted("provider", &mut self.hints.provider)
                                .ok()
                                .flatten(),
                        );
                        let p_id = match &provider {
                            Some(b) => self.interner.intern(b, &self.classifier),
                            None => NULL_ID,
                        };
                        *self.breakdown.entry((p_id, et_id)).or_insert(0) += 1;
                    }
                }
                Status::Other => {}
            }
        }
        r
    }

    /// Breakdown rows: count descending, then provider and error type (NULLs last).
    pub fn breakdown_rows(&self) -> Vec<BreakdownRow> {
        let lossy = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        let mut rows: Vec<BreakdownRow> = self
            .breakdown
            .iter()
            .map(|(&(p, e), &count)| BreakdownRow {
                provider: lossy(self.interner.name(p)),
                error_type: lossy(self.interner.name(e)),
                error_class: self.interner.class(e),
                count,
            })
            .collect();
        let nulls_last = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| nulls_last(&a.provider, &b.provider))
                .then_with(|| nulls_last(&a.error_type, &b.error_type))
        });
        rows
    }
}

/// Error types of a row's failed images in array order (`->>` semantics, NULL kept), for
/// `venue_image_partial_failure_candidates`.
pub fn failed_error_types(images: &[u8]) -> Vec<Option<String>> {
    let Ok(arr) = parse_varlena(images) else {
        return Vec::new();
    };
    if arr.kind() != Kind::Array {
        return Vec::new();
    }
    let mut hints = Hints::default();
    let mut types = Vec::new();
    for obj in arr.elements().filter_map(|e| e.ok()?.as_object()) {
        if status_of(&obj, &mut hints.status).is_failure() {
            let t = error_type_of(&obj, &mut hints);
            types.push(t.map(|b| String::from_utf8_lossy(&b).into_owned()));
        }
    }
    types
}

/// A venue with failed images, generic over how it holds its name and its error types:
/// owned ([`VenueRow`]) or borrowed ([`RowView`], from a [`VenueRow`] or from a
/// [`CompactRows`] list). The figures and the ordering rules are written once, here.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Venue<N, E> {
    /// Venue id.
    pub id: Option<i64>,
    /// Venue name.
    pub name: Option<N>,
    /// City id.
    pub city_id: Option<i64>,
    /// Image objects.
    pub total_images: i64,
    /// Failed + permanently failed.
    pub failed_count: i64,
    /// Uploaded.
    pub uploaded_count: i64,
    /// Failure rate in tenths of a percent.
    pub rate_tenths: i64,
    /// Some failure is transient.
    pub has_transient: bool,
    /// Error types of the failed images (filled only where asked for).
    pub error_types: E,
}

/// A venue row that owns its name and error types.
pub type VenueRow = Venue<String, Vec<Option<String>>>;

/// A venue row borrowed from a [`VenueRow`] or from a [`CompactRows`] list (the name as
/// the bytes of the text value).
pub type RowView<'a> = Venue<&'a [u8], &'a [Option<String>]>;

impl<N, E> Venue<N, E> {
    /// Failure rate in percent (one decimal).
    pub fn failure_rate_pct(&self) -> f64 {
        self.rate_tenths as f64 / 10.0
    }

    /// Priority in tenths: `failed*10 + rate + 20 if transient`, exact.
    pub fn priority_tenths(&self) -> i64 {
        priority_tenths(self.failed_count, self.rate_tenths, self.has_transient)
    }

    /// Priority score (one decimal).
    pub fn priority_score(&self) -> f64 {
        self.priority_tenths() as f64 / 10.0
    }

    /// The same venue with its name and error types converted.
    fn map<'s, N2, E2>(
        &'s self,
        name: impl FnOnce(&'s N) -> N2,
        types: impl FnOnce(&'s E) -> E2,
    ) -> Venue<N2, E2> {
        Venue {
            id: self.id,
            name: self.name.as_ref().map(name),
            city_id: self.city_id,
            total_images: self.total_images,
            failed_count: self.failed_count,
            uploaded_count: self.uploaded_count,
            rate_tenths: self.rate_tenths,
            has_transient: self.has_transient,
            error_types: types(&self.error_types),
        }
    }
}

impl VenueRow {
    /// From a scan.
    pub fn new(id: Option<i64>, name: Option<&[u8]>, city_id: Option<i64>, r: &RowScan) -> Self {
        RowView::scanned(id, name, city_id, r, &[]).to_row()
    }

    /// The row, borrowed.
    pub fn view(&self) -> RowView<'_> {
        self.map(|n| n.as_bytes(), |t| t.as_slice())
    }
}

impl<'a> RowView<'a> {
    /// From a scan.
    pub fn scanned(
        id: Option<i64>,
        name: Option<&'a [u8]>,
        city_id: Option<i64>,
        r: &RowScan,
        error_types: &'a [Option<String>],
    ) -> Self {
        Venue {
            id,
            name,
            city_id,
            total_images: r.total,
            failed_count: r.failed,
            uploaded_count: r.uploaded,
            rate_tenths: r.rate_tenths(),
            has_transient: r.transient,
            error_types,
        }
    }

    /// An owned copy.
    pub fn to_row(&self) -> VenueRow {
        self.map(|b| String::from_utf8_lossy(b).into_owned(), |t| t.to_vec())
    }
}

/// `failed*10 + rate + 20 if transient`, in tenths.
fn priority_tenths(failed: i64, rate_tenths: i64, transient: bool) -> i64 {
    failed * 100 + rate_tenths + if transient { 200 } else { 0 }
}

/// Ordering of venue lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueOrder {
    /// `failed_count DESC, failure_rate_pct DESC, id`.
    ByFailures,
    /// `priority_score DESC, id`.
    ByPriority,
}

/// What a [`VenueOrder`] compares: failed images, rate in tenths, a transient failure, id.
type Rank = (i64, i64, bool, Option<i64>);

impl VenueOrder {
    /// `Less` means `a` comes first.
    pub fn cmp(self, a: &VenueRow, b: &VenueRow) -> Ordering {
        self.cmp_ranks(
            (a.failed_count, a.rate_tenths, a.has_transient, a.id),
            (b.failed_count, b.rate_tenths, b.has_transient, b.id),
        )
    }

    /// [`VenueOrder::cmp`] of the fields it reads.
    #[inline(always)]
    fn cmp_ranks(self, a: Rank, b: Rank) -> Ordering {
        let (af, ar, at, aid) = a;
        let (bf, br, bt, bid) = b;
        match self {
            VenueOrder::ByFailures => bf.cmp(&af).then(br.cmp(&ar)).then(aid.cmp(&bid)),
            VenueOrder::ByPriority => priority_tenths(bf, br, bt)
                .cmp(&priority_tenths(af, ar, at))
                .then(aid.cmp(&bid)),
        }
    }
}

struct Ranked(VenueRow, VenueOrder);

impl PartialEq for Ranked {
    fn eq(&self, o: &Self) -> bool {
        self.1.cmp(&self.0, &o.0) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ranked {
    fn cmp(&self, o: &Self) -> Ordering {
        self.1.cmp(&self.0, &o.0)
    }
}

/// A venue of a [`CompactRows`] list: fixed size, its name in the list's buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
struct CompactRow {
    id: Option<i64>,
    city_id: Option<i64>,
    total: i64,
    failed: i64,
    uploaded: i64,
    rate_tenths: i64,
    /// `names[at..at + len]`, or NULL when `at` is `usize::MAX`.
    name_at: usize,
    name_len: usize,
    transient: bool,
}

impl CompactRow {
    fn rank(&self) -> Rank {
        (self.failed, self.rate_tenths, self.transient, self.id)
    }
}

/// Venues kept without a limit and without their error types: the list of
/// `venues_with_image_failures`, which can hold most of the table (130,000 of 200,000
/// compact venues). Fixed-size rows whose names are copied into one buffer: keeping,
/// sending to the leader, merging, sorting and returning them allocates nothing per
/// venue, where a [`VenueRow`] allocates its name (and its error types) and moves 120
/// bytes in every step of a sort.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactRows {
    rows: Vec<CompactRow>,
    names: Vec<u8>,
}

impl CompactRows {
    /// Venues kept.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// None kept.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn push(&mut self, v: RowView<'_>) {
        let (name_at, name_len) = match v.name {
            Some(b) => {
                let at = self.names.len();
                self.names.extend_from_slice(b);
                (at, b.len())
            }
            None => (usize::MAX, 0),
        };
        self.rows.push(CompactRow {
            id: v.id,
            city_id: v.city_id,
            total: v.total_images,
            failed: v.failed_count,
            uploaded: v.uploaded_count,
            rate_tenths: v.rate_tenths,
            name_at,
            name_len,
            transient: v.has_transient,
        });
    }

    /// Appends another list's venues.
    fn append(&mut self, other: CompactRows) {
        let base = self.names.len();
        self.names.extend_from_slice(&other.names);
        self.rows.extend(other.rows.into_iter().map(|mut r| {
            if r.name_at != usize::MAX {
                r.name_at += base;
            }
            r
        }));
    }

    /// Sorts the venues by `order` (a stable sort that merges runs already in order, as
    /// the parts of parallel workers are: see [`TopK::sort`]).
    fn sort(&mut self, order: VenueOrder) {
        self.rows
            .sort_by(|a, b| order.cmp_ranks(a.rank(), b.rank()));
    }

    fn view(&self, r: &CompactRow) -> RowView<'_> {
        RowView {
            id: r.id,
            name: (r.name_at != usize::MAX)
                .then(|| self.names.get(r.name_at..r.name_at + r.name_len))
                .flatten(),
            city_id: r.city_id,
            total_images: r.total,
            failed_count: r.failed,
            uploaded_count: r.uploaded,
            rate_tenths: r.rate_tenths,
            has_transient: r.transient,
            error_types: &[],
        }
    }

    /// The venues, in the list's order.
    pub fn views(&self) -> impl ExactSizeIterator<Item = RowView<'_>> + '_ {
        self.rows.iter().map(|r| self.view(r))
    }
}

/// The venues of a list, best first: owned rows, or a compact list.
#[derive(Debug, Clone, PartialEq)]
pub enum VenueRows {
    /// Rows with their own strings (bounded lists, error types).
    Rows(Vec<VenueRow>),
    /// A compact list (see [`CompactRows`]).
    Compact(CompactRows),
}

impl Default for VenueRows {
    fn default() -> Self {
        VenueRows::Rows(Vec::new())
    }
}

impl VenueRows {
    /// Venues.
    pub fn len(&self) -> usize {
        match self {
            VenueRows::Rows(rows) => rows.len(),
            VenueRows::Compact(c) => c.len(),
        }
    }

    /// No venues.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The venues, borrowed, in order.
    pub fn views(&self) -> Box<dyn ExactSizeIterator<Item = RowView<'_>> + '_> {
        match self {
            VenueRows::Rows(rows) => Box::new(rows.iter().map(VenueRow::view)),
            VenueRows::Compact(c) => Box::new(c.views()),
        }
    }

    /// The venues as owned rows.
    pub fn into_vec(self) -> Vec<VenueRow> {
        match self {
            VenueRows::Rows(rows) => rows,
            VenueRows::Compact(c) => c.views().map(|v| v.to_row()).collect(),
        }
    }
}

/// Keeps the first `k` venues by an order without sorting everything. Without a limit
/// (`k == usize::MAX`) it keeps every venue in a plain vector, sorted once at the end: a
/// heap would only add work per row; without a limit and without error types, in a
/// [`CompactRows`] list.
pub struct TopK {
    k: usize,
    order: VenueOrder,
    kept: Kept,
}

enum Kept {
    /// Every venue offered, in arrival order (sorted by [`TopK::sort`]).
    All(Vec<VenueRow>),
    /// Every venue offered, compactly, in arrival order (sorted by [`TopK::sort`]).
    Compact(CompactRows),
    /// The best `k` so far; the worst on top.
    Best(BinaryHeap<Ranked>),
}

impl TopK {
    /// Up to `k` venues in `order`.
    pub fn new(k: usize, order: VenueOrder) -> Self {
        let kept = if k == usize::MAX {
            Kept::All(Vec::new())
        } else {
            Kept::Best(BinaryHeap::new())
        };
        TopK { k, order, kept }
    }

    /// Every venue, in `order`, kept in a [`CompactRows`] list (no error types).
    pub fn compact(order: VenueOrder) -> Self {
        TopK {
            k: usize::MAX,
            order,
            kept: Kept::Compact(CompactRows::default()),
        }
    }

    /// Whether venues are kept compactly (their error types are not kept).
    pub fn is_compact(&self) -> bool {
        matches!(self.kept, Kept::Compact(_))
    }

    /// Would `row` enter the list? (Lets the caller skip building expensive fields.)
    pub fn admits(&self, row: &VenueRow) -> bool {
        match &self.kept {
            Kept::All(_) | Kept::Compact(_) => true,
            Kept::Best(_) if self.k == 0 => false,
            Kept::Best(heap) if heap.len() < self.k => true,
            Kept::Best(heap) => {
                let worst = heap.peek().expect("full heap");
                self.order.cmp(row, &worst.0) == Ordering::Less
            }
        }
    }

    /// Offers a venue.
    pub fn push(&mut self, row: VenueRow) {
        if !self.admits(&row) {
            return;
        }
        match &mut self.kept {
            Kept::All(rows) => rows.push(row),
            Kept::Compact(c) => c.push(row.view()),
            Kept::Best(heap) => {
                heap.push(Ranked(row, self.order));
                if heap.len() > self.k {
                    heap.pop();
                }
            }
        }
    }

    /// Offers a borrowed venue (a compact list copies what it keeps, without allocating
    /// a [`VenueRow`]).
    pub fn push_view(&mut self, row: RowView<'_>) {
        match &mut self.kept {
            Kept::Compact(c) => c.push(row),
            _ => self.push(row.to_row()),
        }
    }

    /// Offers every venue of another list.
    pub fn extend(&mut self, other: TopK) {
        match (&mut self.kept, other.kept) {
            (Kept::All(rows), Kept::All(more)) => rows.extend(more),
            (Kept::Compact(c), Kept::Compact(more)) => c.append(more),
            (_, Kept::All(more)) => more.into_iter().for_each(|r| self.push(r)),
            (_, Kept::Compact(more)) => more.views().for_each(|v| self.push_view(v)),
            (_, Kept::Best(heap)) => heap.into_iter().for_each(|r| self.push(r.0)),
        }
    }

    /// The venues kept, in no particular order (an unbounded list in its order once
    /// sorted).
    pub fn views(&self) -> Box<dyn Iterator<Item = RowView<'_>> + '_> {
        match &self.kept {
            Kept::All(rows) => Box::new(rows.iter().map(VenueRow::view)),
            Kept::Compact(c) => Box::new(c.views()),
            Kept::Best(heap) => Box::new(heap.iter().map(|r| r.0.view())),
        }
    }

    /// Sorts an unbounded list in place, best first (a bounded one is a heap, left as is).
    ///
    /// The sort is the standard library's stable one, which finds runs already in order
    /// and merges them in linear time. Each parallel worker's part is sorted before it is
    /// sent ([`VenueList::encode`]), so the leader, which concatenates the parts, merges
    /// sorted runs instead of sorting 130,000 venues on its own after the scan.
    pub fn sort(&mut self) {
        let order = self.order;
        match &mut self.kept {
            Kept::All(rows) => rows.sort_by(|a, b| order.cmp(a, b)),
            Kept::Compact(c) => c.sort(order),
            Kept::Best(_) => {}
        }
    }

    /// The venues, best first.
    pub fn into_rows(mut self) -> VenueRows {
        self.sort();
        match self.kept {
            Kept::All(rows) => VenueRows::Rows(rows),
            Kept::Compact(c) => VenueRows::Compact(c),
            Kept::Best(heap) => {
                let mut rows: Vec<VenueRow> = heap.into_iter().map(|r| r.0).collect();
                rows.sort_unstable_by(|a, b| self.order.cmp(a, b));
                VenueRows::Rows(rows)
            }
        }
    }

    /// The venues, best first, as owned rows.
    pub fn into_sorted(self) -> Vec<VenueRow> {
        self.into_rows().into_vec()
    }

    /// Writes the venues, best first ([`encode_rows`]): an unbounded list is sorted in
    /// place (the set of venues is unchanged, so later offers and calls agree), a bounded
    /// one through a sorted copy of its references.
    pub fn write_sorted(&mut self, w: &mut Writer) {
        self.sort();
        let order = self.order;
        match &self.kept {
            Kept::Best(heap) => {
                let mut rows: Vec<&VenueRow> = heap.iter().map(|r| &r.0).collect();
                rows.sort_unstable_by(|a, b| order.cmp(a, b));
                encode_rows(w, rows.into_iter().map(VenueRow::view));
            }
            _ => encode_rows(w, self.views()),
        }
    }
}

/// Sorts a full venue list.
pub fn sort_venues(rows: &mut [VenueRow], order: VenueOrder) {
    rows.sort_by(|a, b| order.cmp(a, b));
}

/// `venue_image_summary_stats`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SummaryStats {
    /// Venues with at least one failed image.
    pub total_venues_with_failures: i64,
    /// Failed images (all venues).
    pub total_failed_images: i64,
    /// Uploaded images of the venues with failures.
    pub total_uploaded_images: i64,
    /// Sum of the venues' failure rates in tenths (for the mean).
    pub sum_rate_tenths: i64,
    /// Venues with a transient failure.
    pub venues_with_transient: i64,
    /// Venues with a permanent failure.
    pub venues_with_permanent: i64,
    /// Venues with an ambiguous failure.
    pub venues_with_ambiguous: i64,
}

impl SummaryStats {
    /// Adds one row.
    pub fn add(&mut self, r: &RowScan) {
        if r.failed == 0 {
            return;
        }
        self.total_venues_with_failures += 1;
        self.total_failed_images += r.failed;
        self.total_uploaded_images += r.uploaded;
        self.sum_rate_tenths += r.rate_tenths();
        self.venues_with_transient += r.transient as i64;
        self.venues_with_permanent += r.permanent as i64;
        self.venues_with_ambiguous += r.ambiguous as i64;
    }

    /// Adds another state's figures (from a parallel worker).
    pub fn merge(&mut self, o: &SummaryStats) {
        self.total_venues_with_failures += o.total_venues_with_failures;
        self.total_failed_images += o.total_failed_images;
        self.total_uploaded_images += o.total_uploaded_images;
        self.sum_rate_tenths += o.sum_rate_tenths;
        self.venues_with_transient += o.venues_with_transient;
        self.venues_with_permanent += o.venues_with_permanent;
        self.venues_with_ambiguous += o.venues_with_ambiguous;
    }

    /// Mean failure rate of the venues with failures (of their 1-decimal rates, as the
    /// original computed it), rounded to one decimal.
    pub fn average_failure_rate(&self) -> f64 {
        mean_rate_pct(self.sum_rate_tenths, self.total_venues_with_failures)
    }
}

/// The state of `venue_images_stats`: summary figures, health and breakdown.
pub struct Stats {
    /// Row reader and breakdown.
    pub scanner: Scanner,
    /// Summary figures.
    pub summary: SummaryStats,
}

impl Stats {
    /// An empty state.
    pub fn new(classifier: Classifier) -> Self {
        Stats {
            scanner: Scanner::new(classifier),
            summary: SummaryStats::default(),
        }
    }

    /// Adds one row's images value.
    pub fn add(&mut self, images: Option<&[u8]>) {
        let r = self.scanner.scan(images, true);
        self.summary.add(&r);
    }

    /// Adds another state (from a parallel worker).
    pub fn merge(&mut self, other: &Stats) {
        let (a, b) = (&mut self.scanner, &other.scanner);
        for (&(p, e), &n) in &b.breakdown {
            let mut local = |id: u32| match b.interner.name(id) {
                Some(name) => a.interner.intern(name, &a.classifier),
                None => NULL_ID,
            };
            let key = (local(p), local(e));
            *a.breakdown.entry(key).or_insert(0) += n;
        }
        a.health.merge(&b.health);
        self.summary.merge(&other.summary);
    }

    /// Serialises the state (the classifier is not included: it comes from the settings).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let h = &self.scanner.health;
        for v in [
            h.rows,
            h.null_values,
            h.non_array_values,
            h.non_object_elements,
            h.malformed_values,
        ] {
            w.i64(v);
        }
        let s = &self.summary;
        for v in [
            s.total_venues_with_failures,
            s.total_failed_images,
            s.total_uploaded_images,
            s.sum_rate_tenths,
            s.venues_with_transient,
            s.venues_with_permanent,
            s.venues_with_ambiguous,
        ] {
            w.i64(v);
        }
        let names = &self.scanner.interner.names;
        w.u32(names.len() as u32);
        for n in names {
            w.opt_bytes(Some(n));
        }
        w.u32(self.scanner.breakdown.len() as u32);
        for (&(p, e), &n) in &self.scanner.breakdown {
            w.u32(p);
            w.u32(e);
            w.i64(n);
        }
        w.buf
    }

    /// Reads a state written by [`Stats::encode`].
    pub fn decode(bytes: &[u8], classifier: Classifier) -> Result<Stats, Malformed> {
        let mut r = Reader::new(bytes);
        let mut st = Stats::new(classifier);
        let h = &mut st.scanner.health;
        h.rows = r.i64()?;
        h.null_values = r.i64()?;
        h.non_array_values = r.i64()?;
        h.non_object_elements = r.i64()?;
        h.malformed_values = r.i64()?;
        let s = &mut st.summary;
        s.total_venues_with_failures = r.i64()?;
        s.total_failed_images = r.i64()?;
        s.total_uploaded_images = r.i64()?;
        s.sum_rate_tenths = r.i64()?;
        s.venues_with_transient = r.i64()?;
        s.venues_with_permanent = r.i64()?;
        s.venues_with_ambiguous = r.i64()?;
        let n = r.count(4)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.opt_bytes()?.ok_or(Malformed("null name in state"))?;
            ids.push(st.scanner.interner.intern(name, &st.scanner.classifier));
        }
        let n = r.count(16)?;
        for _ in 0..n {
            let map = |id: u32| -> Result<u32, Malformed> {
                if id == NULL_ID {
                    Ok(NULL_ID)
                } else {
                    ids.get(id as usize)
                        .copied()
                        .ok_or(Malformed("bad name id in state"))
                }
            };
            let p = map(r.u32()?)?;
            let e = map(r.u32()?)?;
            let count = r.i64()?;
            *st.scanner.breakdown.entry((p, e)).or_insert(0) += count;
        }
        r.finish()?;
        Ok(st)
    }
}

/// Which venues a [`VenueList`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListSpec {
    /// Minimum failed images (at least 1 in every list).
    pub min_failures: i64,
    /// Require at least one uploaded image (partial failures).
    pub require_uploaded: bool,
    /// Keep at most this many (`None`: all).
    pub max_rows: Option<usize>,
    /// Order.
    pub order: VenueOrder,
    /// Fill in `error_types`.
    pub with_error_types: bool,
}

/// The state of a venue list: the best venues so far, by the spec's order.
pub struct VenueList {
    /// What to keep.
    pub spec: ListSpec,
    /// Reader of images.
    pub scanner: Scanner,
    top: TopK,
}

impl VenueList {
    /// An empty list: unbounded without error types, a [`CompactRows`] list.
    pub fn new(spec: ListSpec, classifier: Classifier) -> Self {
        let top = match spec.max_rows {
            None if !spec.with_error_types => TopK::compact(spec.order),
            k => TopK::new(k.unwrap_or(usize::MAX), spec.order),
        };
        VenueList {
            spec,
            scanner: Scanner::new(classifier),
            top,
        }
    }

    /// Offers one venue row.
    pub fn add(
        &mut self,
        id: Option<i64>,
        name: Option<&[u8]>,
        city_id: Option<i64>,
        images: Option<&[u8]>,
    ) {
        let r = self.scanner.scan(images, false);
        if r.failed < self.spec.min_failures.max(1)
            || (self.spec.require_uploaded && r.uploaded == 0)
        {
            return;
        }
        if self.top.is_compact() {
            self.top
                .push_view(RowView::scanned(id, name, city_id, &r, &[]));
            return;
        }
        let mut v = VenueRow::new(id, None, city_id, &r);
        if !self.top.admits(&v) {
            return;
        }
        v.name = name.map(|b| String::from_utf8_lossy(b).into_owned());
        if self.spec.with_error_types {
            v.error_types = images.map(failed_error_types).unwrap_or_default();
        }
        self.top.push(v);
    }

    /// Adds another list (from a parallel worker).
    pub fn merge(&mut self, other: VenueList) {
        let h = &mut self.scanner.health;
        let o = &other.scanner.health;
        h.rows += o.rows;
        self.top.extend(other.top);
    }

    /// The venues, best first.
    pub fn into_rows(self) -> VenueRows {
        self.top.into_rows()
    }

    /// The venues, best first, as owned rows.
    pub fn into_sorted(self) -> Vec<VenueRow> {
        self.top.into_sorted()
    }

    /// Writes the venues, best first, as [`encode_rows`] does (an unbounded list is
    /// sorted in place; the venues kept do not change).
    pub fn write_sorted(&mut self, w: &mut Writer) {
        self.top.write_sorted(w);
    }

    /// Moves the contents out, leaving an empty list with the same spec.
    pub fn take(&mut self) -> VenueList {
        let empty = VenueList::new(self.spec, self.scanner.classifier.clone());
        std::mem::replace(self, empty)
    }

    /// Serialises the spec and the rows kept (an unbounded list sorted first, see
    /// [`TopK::sort`]).
    pub fn encode(&mut self) -> Vec<u8> {
        self.top.sort();
        let mut w = Writer::default();
        w.i64(self.spec.min_failures);
        w.u8(self.spec.require_uploaded as u8);
        w.opt_i64(self.spec.max_rows.map(|k| k as i64));
        w.u8(matches!(self.spec.order, VenueOrder::ByPriority) as u8);
        w.u8(self.spec.with_error_types as u8);
        w.i64(self.scanner.health.rows);
        encode_rows(&mut w, self.top.views());
        w.buf
    }

    /// Reads a list written by [`VenueList::encode`].
    pub fn decode(bytes: &[u8], classifier: Classifier) -> Result<VenueList, Malformed> {
        let mut r = Reader::new(bytes);
        let spec = ListSpec {
            min_failures: r.i64()?,
            require_uploaded: r.u8()? != 0,
            max_rows: r.opt_i64()?.map(|k| k.max(0) as usize),
            order: if r.u8()? != 0 {
                VenueOrder::ByPriority
            } else {
                VenueOrder::ByFailures
            },
            with_error_types: r.u8()? != 0,
        };
        let mut list = VenueList::new(spec, classifier);
        list.scanner.health.rows = r.i64()?;
        read_rows(&mut r, |v| list.top.push_view(v))?;
        r.finish()?;
        Ok(list)
    }
}

/// Writes venue rows (used for lists crossing process boundaries and as final results).
pub fn encode_rows<'a>(w: &mut Writer, rows: impl IntoIterator<Item = RowView<'a>>) {
    // The count first, filled in at the end (the rows are not collected to count them).
    let at = w.buf.len();
    w.u32(0);
    let mut n = 0u32;
    for v in rows {
        n += 1;
        w.opt_i64(v.id);
        w.opt_bytes(v.name);
        w.opt_i64(v.city_id);
        w.i64(v.total_images);
        w.i64(v.failed_count);
        w.i64(v.uploaded_count);
        w.i64(v.rate_tenths);
        w.u8(v.has_transient as u8);
        w.u32(v.error_types.len() as u32);
        for t in v.error_types {
            w.opt_bytes(t.as_deref().map(str::as_bytes));
        }
    }
    w.buf[at..at + 4].copy_from_slice(&n.to_le_bytes());
}

/// Reads rows written by [`encode_rows`], handing each to `f` borrowed (its error types
/// are built only when it has some).
fn read_rows<'a>(r: &mut Reader<'a>, mut f: impl FnMut(RowView<'_>)) -> Result<(), Malformed> {
    let n = r.count(40)?;
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    let mut error_types = Vec::new();
    for _ in 0..n {
        let id = r.opt_i64()?;
        let name = r.opt_bytes()?;
        let city_id = r.opt_i64()?;
        let total_images = r.i64()?;
        let failed_count = r.i64()?;
        let uploaded_count = r.i64()?;
        let rate_tenths = r.i64()?;
        let has_transient = r.u8()? != 0;
        let k = r.count(4)?;
        error_types.clear();
        for _ in 0..k {
            error_types.push(text(r.opt_bytes()?));
        }
        f(RowView {
            id,
            name,
            city_id,
            total_images,
            failed_count,
            uploaded_count,
            rate_tenths,
            has_transient,
            error_types: &error_types,
        });
    }
    Ok(())
}

/// Reads rows written by [`encode_rows`].
pub fn decode_rows(r: &mut Reader<'_>) -> Result<Vec<VenueRow>, Malformed> {
    let mut out = Vec::new();
    read_rows(r, |v| out.push(v.to_row()))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
