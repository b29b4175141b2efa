//! The configured venues relation (`venue_images.venues_table` and its columns), resolved
//! against the catalog, and the choice between a full scan and the GIN index.

use crate::errors::VenueError;
use crate::settings::{self, TableNames};
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use pgrx::spi::Spi;

/// The venues relation as resolved from the settings.
#[derive(Debug, Clone)]
pub struct VenueSource {
    /// `schema.table`, quoted.
    pub relation: String,
    /// Relation oid.
    pub oid: pg_sys::Oid,
    /// Its owner: statements on the relation run as this role (see [`crate::owner`]).
    pub owner: pg_sys::Oid,
    /// Select-list expressions: id (bigint), name (text), city (bigint), images (jsonb).
    pub id_expr: String,
    /// Name expression (`NULL::text` when the column is absent).
    pub name_expr: String,
    /// City expression (`NULL::bigint` when absent).
    pub city_expr: String,
    /// Slug expression (`NULL::text` when absent).
    pub slug_expr: String,
    /// Images expression.
    pub images_expr: String,
    /// Quoted images column (for updates).
    pub images_column: String,
    /// Quoted id column.
    pub id_column: String,
    /// A plain GIN index exists on the images column (and it is jsonb).
    pub has_gin: bool,
    /// The settings used.
    pub names: TableNames,
}

fn quote_ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}

/// Resolves `venue_images.venues_table` and its columns against the catalog.
pub fn resolve() -> Result<VenueSource, VenueError> {
    let names = settings::table_names()?;
    // The name is resolved without any search path: `schema.table`, or `table` in
    // `public`. Temporary and TOAST schemas never qualify, so no session can substitute
    // a relation of its own (the definer functions write to this one).
    let query = "
        WITH name AS (SELECT pg_catalog.parse_ident($1) AS p)
        SELECT c.oid,
               pg_catalog.format('%I.%I', n.nspname, c.relname),
               c.relowner,
               (SELECT pg_catalog.format_type(a.atttypid, NULL) FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
               (SELECT a.attnum FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $3 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $4 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $5 AND a.attnum > 0 AND NOT a.attisdropped),
               EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attname = $6 AND a.attnum > 0 AND NOT a.attisdropped)
          FROM name, pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE pg_catalog.cardinality(name.p) IN (1, 2)
           AND c.relname = name.p[pg_catalog.cardinality(name.p)]
           AND n.nspname = CASE WHEN pg_catalog.cardinality(name.p) = 2 THEN name.p[1] ELSE 'public' END
           AND n.nspname !~ '^pg_(temp|toast)'
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f')";
    let args: Vec<DatumWithOid> = vec![
        names.table.as_str().into(),
        names.images.as_str().into(),
        names.id.as_str().into(),
        names.name.as_str().into(),
        names.city.as_str().into(),
        names.slug.as_str().into(),
    ];
    type Found = (
        Option<pg_sys::Oid>,
        Option<String>,
        Option<pg_sys::Oid>,
        Option<String>,
        Option<i16>,
        bool,
        bool,
        bool,
        bool,
    );
    let found: Option<Found> = Spi::connect(|client| {
        let table = client.select(query, Some(1), &args)?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = table.first();
        Ok(Some((
            row.get::<pg_sys::Oid>(1)?,
            row.get::<String>(2)?,
            row.get::<pg_sys::Oid>(3)?,
            row.get::<String>(4)?,
            row.get::<i16>(5)?,
            row.get::<bool>(6)?.unwrap_or(false),
            row.get::<bool>(7)?.unwrap_or(false),
            row.get::<bool>(8)?.unwrap_or(false),
            row.get::<bool>(9)?.unwrap_or(false),
        )))
    })?;
    let Some((
        Some(oid),
        Some(relation),
        Some(owner),
        images_type,
        images_attnum,
        has_id,
        has_name,
        has_city,
        has_slug,
    )) = found
    else {
        return Err(VenueError::UndefinedTable(format!(
            "relation \"{}\" does not exist (venue_images.venues_table; an unqualified name means public.{})",
            names.table, names.table
        )));
    };
    let images_column = quote_ident(&names.images);
    let images_expr = match images_type.as_deref() {
        Some("jsonb") => images_column.clone(),
        Some("json") => format!("{images_column}::jsonb"),
        Some(other) => {
            return Err(VenueError::WrongType(format!(
                "column \"{}\" of {relation} has type {other}, expected jsonb (venue_images.images_column)",
                names.images
            )))
        }
        None => {
            return Err(VenueError::UndefinedColumn(format!(
                "column \"{}\" of {relation} does not exist (venue_images.images_column)",
                names.images
            )))
        }
    };
    if !has_id {
        return Err(VenueError::UndefinedColumn(format!(
            "column \"{}\" of {relation} does not exist (venue_images.id_column)",
            names.id
        )));
    }
    let id_column = quote_ident(&names.id);
    let has_gin = images_type.as_deref() == Some("jsonb")
        && match images_attnum {
            Some(attnum) => crate::plans::select_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
                   JOIN pg_catalog.pg_am am ON am.oid = ic.relam
                  WHERE i.indrelid = $1 AND am.amname = 'gin' AND i.indkey[0] = $2
                    AND i.indnatts = 1 AND i.indpred IS NULL AND i.indisvalid)",
                &[oid.into(), attnum.into()],
            )?
            .unwrap_or(false),
            None => false,
        };
    Ok(VenueSource {
        oid,
        owner,
        id_expr: format!("{id_column}::bigint"),
        name_expr: if has_name {
            format!("{}::text", quote_ident(&names.name))
        } else {
            "NULL::text".into()
        },
        city_expr: if has_city {
            format!("{}::bigint", quote_ident(&names.city))
        } else {
            "NULL::bigint".into()
        },
        slug_expr: if has_slug {
            format!("{}::text", quote_ident(&names.slug))
        } else {
            "NULL::text".into()
        },
        images_expr,
        images_column,
        id_column,
        relation,
        has_gin,
        names,
    })
}

impl VenueSource {
    /// `WHERE` clause restricting a query to venues with a failed image: the
    /// containment test the GIN index answers.
    fn failures_predicate(&self) -> String {
        format!(
            "({c} @> '[{{\"upload_status\": \"failed\"}}]'::jsonb \
             OR {c} @> '[{{\"upload_status\": \"permanently_failed\"}}]'::jsonb)",
            c = self.images_column
        )
    }

    /// The `WHERE` clause for a query that only needs venues with failures: the GIN
    /// predicate when an index exists and a small sample says failures are rarer than
    /// `venue_images.gin_max_failing_share`, otherwise nothing (one full, parallel scan).
    /// Measured on the benchmark data: at 25% of venues failing, the bitmap heap scan
    /// plus its recheck already costs as much as the parallel scan of the whole table.
    pub fn failures_filter(&self) -> Result<String, VenueError> {
        let threshold = settings::gin_max_failing_share();
        if !self.has_gin || threshold <= 0.0 {
            return Ok(String::new());
        }
        if threshold >= 1.0 {
            return Ok(format!(" WHERE {}", self.failures_predicate()));
        }
        let reltuples = crate::plans::select_one::<f32>(
            "SELECT reltuples FROM pg_catalog.pg_class WHERE oid = $1",
            &[self.oid.into()],
        )?
        .unwrap_or(-1.0) as f64;
        // About 500 rows, whole pages at random (cheap), same sample every time. The
        // share only chooses a plan, and near the threshold both plans cost about the
        // same: at a 5% share, 500 rows estimate it within about 1 point (one standard
        // error), and the sample costs 3 ms instead of 2,000 rows' 12 ms on 200,000
        // compact venues (its rows are detoasted for the containment test).
        let pct = if reltuples > 0.0 {
            (500.0 / reltuples * 100.0).clamp(0.01, 100.0)
        } else {
            100.0
        };
        let _as_owner = crate::owner::AsOwner::of(self);
        let share = crate::plans::select_one::<f64>(&format!(
            "SELECT (pg_catalog.count(*) FILTER (WHERE {pred}))::float8 / greatest(pg_catalog.count(*), 1)
               FROM {rel} TABLESAMPLE SYSTEM ({pct}) REPEATABLE (2008)",
            pred = self.failures_predicate(),
            rel = self.relation,
        ), &[])?
        .unwrap_or(1.0);
        Ok(if share < threshold {
            format!(" WHERE {}", self.failures_predicate())
        } else {
            String::new()
        })
    }
}
