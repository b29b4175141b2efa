//! The configured venues relation (`venue_images.venues_table` and its columns), resolved
//! against the catalog.

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
    /// Its schema's name, unquoted (the identity check of [`crate::owner::AsOwner`]).
    pub schema_name: String,
    /// Its name, unquoted.
    pub relation_name: String,
    /// Its `relkind` (`r`, `p`, `v`, `m` or `f`).
    pub kind: u8,
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
    let query = r#"
        WITH name AS (SELECT pg_catalog.parse_ident($1) AS p)
        SELECT c.oid,
               pg_catalog.format('%I.%I', n.nspname, c.relname),
               c.relowner,
               pg_catalog.format_type(img.atttypid, NULL),
               img.attnum,
               $3 OPERATOR(pg_catalog.=) ANY (cols.names),
               $4 OPERATOR(pg_catalog.=) ANY (cols.names),
               $5 OPERATOR(pg_catalog.=) ANY (cols.names),
               $6 OPERATOR(pg_catalog.=) ANY (cols.names),
               n.nspname::pg_catalog.text,
               c.relname::pg_catalog.text,
               c.relkind::pg_catalog.text
          FROM name, pg_catalog.pg_class c
          JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
          CROSS JOIN LATERAL (
                SELECT pg_catalog.array_agg(a.attname) AS names FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid OPERATOR(pg_catalog.=) c.oid
                   AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) cols
          LEFT JOIN pg_catalog.pg_attribute img
            ON img.attrelid OPERATOR(pg_catalog.=) c.oid AND img.attname OPERATOR(pg_catalog.=) $2
               AND img.attnum OPERATOR(pg_catalog.>) 0 AND NOT img.attisdropped
         WHERE (pg_catalog.cardinality(name.p) OPERATOR(pg_catalog.=) 1
                OR pg_catalog.cardinality(name.p) OPERATOR(pg_catalog.=) 2)
           AND c.relname OPERATOR(pg_catalog.=) name.p[pg_catalog.cardinality(name.p)]
           AND n.nspname OPERATOR(pg_catalog.=)
               CASE WHEN pg_catalog.cardinality(name.p) OPERATOR(pg_catalog.=) 2 THEN name.p[1]
                    ELSE 'public' END
           AND n.nspname OPERATOR(pg_catalog.!~) '^pg_(temp|toast)'
           AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p,v,m,f}'::pg_catalog."char"[])"#;
    let args: Vec<DatumWithOid> = vec![
        names.table.as_str().into(),
        names.images.as_str().into(),
        names.id.as_str().into(),
        names.name.as_str().into(),
        names.city.as_str().into(),
        names.slug.as_str().into(),
    ];
    /// The catalog's answer: the relation and which configured columns it has.
    struct Found {
        oid: pg_sys::Oid,
        relation: String,
        owner: pg_sys::Oid,
        images_type: Option<String>,
        images_attnum: Option<i16>,
        has_id: bool,
        has_name: bool,
        has_city: bool,
        has_slug: bool,
        schema_name: String,
        relation_name: String,
        kind: u8,
    }
    let found: Option<Found> = Spi::connect(|client| {
        let table = client.select(query, Some(1), &args)?;
        if table.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = table.first();
        let (Some(oid), Some(relation), Some(owner), Some(schema_name), Some(relation_name)) = (
            row.get::<pg_sys::Oid>(1)?,
            row.get::<String>(2)?,
            row.get::<pg_sys::Oid>(3)?,
            row.get::<String>(10)?,
            row.get::<String>(11)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(Found {
            oid,
            relation,
            owner,
            images_type: row.get::<String>(4)?,
            images_attnum: row.get::<i16>(5)?,
            has_id: row.get::<bool>(6)?.unwrap_or(false),
            has_name: row.get::<bool>(7)?.unwrap_or(false),
            has_city: row.get::<bool>(8)?.unwrap_or(false),
            has_slug: row.get::<bool>(9)?.unwrap_or(false),
            schema_name,
            relation_name,
            kind: row
                .get::<String>(12)?
                .and_then(|k| k.bytes().next())
                .unwrap_or(b'r'),
        }))
    })?;
    let Some(Found {
        oid,
        relation,
        owner,
        images_type,
        images_attnum,
        has_id,
        has_name,
        has_city,
        has_slug,
        schema_name,
        relation_name,
        kind,
    }) = found
    else {
        return Err(VenueError::UndefinedTable(format!(
            "relation \"{}\" does not exist (venue_images.venues_table; an unqualified name means public.{})",
            names.table, names.table
        )));
    };
    let images_column = quote_ident(&names.images);
    let images_expr = match images_type.as_deref() {
        Some("jsonb") => images_column.clone(),
        Some("json") => format!("{images_column}::pg_catalog.jsonb"),
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
            Some(attnum) => crate::spi::select_one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                   JOIN pg_catalog.pg_class ic ON ic.oid OPERATOR(pg_catalog.=) i.indexrelid
                   JOIN pg_catalog.pg_am am ON am.oid OPERATOR(pg_catalog.=) ic.relam
                  WHERE i.indrelid OPERATOR(pg_catalog.=) $1
                    AND am.amname OPERATOR(pg_catalog.=) 'gin'
                    AND i.indkey[0] OPERATOR(pg_catalog.=) $2
                    AND i.indnatts OPERATOR(pg_catalog.=) 1 AND i.indpred IS NULL AND i.indisvalid)",
                &[oid.into(), attnum.into()],
            )?
            .unwrap_or(false),
            None => false,
        };
    Ok(VenueSource {
        oid,
        owner,
        schema_name,
        relation_name,
        kind,
        id_expr: format!("{id_column}::pg_catalog.int8"),
        name_expr: if has_name {
            format!("{}::pg_catalog.text", quote_ident(&names.name))
        } else {
            "NULL::pg_catalog.text".into()
        },
        city_expr: if has_city {
            format!("{}::pg_catalog.int8", quote_ident(&names.city))
        } else {
            "NULL::pg_catalog.int8".into()
        },
        slug_expr: if has_slug {
            format!("{}::pg_catalog.text", quote_ident(&names.slug))
        } else {
            "NULL::pg_catalog.text".into()
        },
        images_expr,
        images_column,
        id_column,
        relation,
        has_gin,
        names,
    })
}
