//! Datasets in the store, once for both backends: a push stores the file's bytes as the next
//! numbered version (nothing when the latest holds the same bytes), and reads give the versions
//! and their content back. It names no driver; what a valid dataset is, is `inputs::dataset`'s.

use super::Backend;
use crate::model::DatasetVersion;
use crate::store::sql::{Db, Row, all, args, first, json, to_json};
use crate::store::{DatasetStore, NewDatasetVersion, Result, StoreError};

const DATASET_COLUMNS: &str = "v.id, d.name, v.seq, v.format, v.hash, v.rows, v.columns, v.message, \
     v.created_at, v.created_by";
const DATASET_JOINS: &str = "FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id";

fn version_of(row: &dyn Row) -> Result<DatasetVersion> {
    Ok(DatasetVersion {
        id: row.text(0)?,
        dataset: row.text(1)?,
        seq: row.int(2)?,
        format: row.text(3)?,
        hash: row.text(4)?,
        rows: row.int(5)?,
        columns: json(&row.text(6)?, "dataset_versions.columns")?,
        message: row.opt_text(7)?,
        created_at: row.text(8)?,
        created_by: row.text(9)?,
    })
}

fn latest(db: &dyn Db, name: &str) -> Result<Option<DatasetVersion>> {
    first(
        db,
        &format!(
            "SELECT {DATASET_COLUMNS} {DATASET_JOINS} WHERE d.name = $1 ORDER BY v.seq DESC LIMIT 1"
        ),
        args![name],
        version_of,
    )
}

impl<B: Backend> DatasetStore for B {
    fn push_dataset(
        &self,
        name: &str,
        version: &NewDatasetVersion,
    ) -> Result<(DatasetVersion, bool)> {
        self.write(|db| {
            let now = version.created_at.clone().unwrap_or_else(crate::model::now);
            // Created if missing, then locked: two pushes of one dataset queue here, so the
            // second sees the first's version (and adds nothing when the bytes are the same).
            db.exec(
                "INSERT INTO datasets (id, name, created_at, created_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (name) DO NOTHING",
                args![
                    &uuid::Uuid::now_v7().to_string(),
                    name,
                    &now,
                    &version.author
                ],
            )?;
            let lock = db.dialect().for_update();
            let dataset_id = first(
                db,
                &format!("SELECT id FROM datasets WHERE name = $1{lock}"),
                args![name],
                |r| r.text(0),
            )?
            .ok_or_else(|| StoreError::Corrupt("a dataset just written is missing".into()))?;
            let previous = latest(db, name)?;
            if let Some(previous) = previous.as_ref().filter(|p| p.hash == version.hash) {
                return Ok((previous.clone(), false));
            }
            let seq = previous.map_or(1, |p| p.seq + 1);
            let id = uuid::Uuid::now_v7().to_string();
            db.exec(
                "INSERT INTO dataset_versions (id, dataset_id, seq, format, content, hash, rows, \
                 columns, message, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                args![
                    &id,
                    &dataset_id,
                    seq,
                    &version.format,
                    &version.content,
                    &version.hash,
                    version.rows,
                    &to_json(&version.columns)?,
                    &version.message,
                    &now,
                    &version.author
                ],
            )?;
            let stored = latest(db, name)?
                .ok_or_else(|| StoreError::Corrupt("a pushed dataset version is missing".into()))?;
            Ok((stored, true))
        })
    }

    fn datasets(&self) -> Result<Vec<DatasetVersion>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "SELECT {DATASET_COLUMNS} {DATASET_JOINS} WHERE v.seq = \
                     (SELECT MAX(seq) FROM dataset_versions WHERE dataset_id = v.dataset_id) \
                     ORDER BY d.name"
                ),
                &[],
                version_of,
            )
        })
    }

    fn dataset_versions(&self, name: &str) -> Result<Vec<DatasetVersion>> {
        self.read(|db| {
            let versions = all(
                db,
                &format!(
                    "SELECT {DATASET_COLUMNS} {DATASET_JOINS} WHERE d.name = $1 ORDER BY v.seq DESC"
                ),
                args![name],
                version_of,
            )?;
            if versions.is_empty() {
                return Err(StoreError::UnknownDataset { name: name.into() });
            }
            Ok(versions)
        })
    }

    fn dataset_content(&self, name: &str, seq: Option<i64>) -> Result<(DatasetVersion, String)> {
        self.read(|db| {
            let with_content = |row: &dyn Row| Ok((version_of(row)?, row.text(10)?));
            let found = match seq {
                None => first(
                    db,
                    &format!(
                        "SELECT {DATASET_COLUMNS}, v.content {DATASET_JOINS} WHERE d.name = $1 \
                         ORDER BY v.seq DESC LIMIT 1"
                    ),
                    args![name],
                    with_content,
                )?,
                Some(seq) => first(
                    db,
                    &format!("SELECT {DATASET_COLUMNS}, v.content {DATASET_JOINS} WHERE d.name = $1 AND v.seq = $2"),
                    args![name, seq],
                    with_content,
                )?,
            };
            if let Some(found) = found {
                return Ok(found);
            }
            let known = first(
                db,
                "SELECT 1 FROM datasets WHERE name = $1",
                args![name],
                |r| r.int(0),
            )?;
            Err(match (known, seq) {
                (Some(_), Some(seq)) => StoreError::UnknownDatasetVersion {
                    name: name.into(),
                    seq,
                },
                _ => StoreError::UnknownDataset { name: name.into() },
            })
        })
    }

    fn dataset_by_hash(&self, hash: &str) -> Result<Option<(DatasetVersion, String)>> {
        self.read(|db| {
            first(
                db,
                &format!(
                    "SELECT {DATASET_COLUMNS}, v.content {DATASET_JOINS} WHERE v.hash = $1 \
                     ORDER BY v.created_at, v.seq LIMIT 1"
                ),
                args![hash],
                |row| Ok((version_of(row)?, row.text(10)?)),
            )
        })
    }
}
