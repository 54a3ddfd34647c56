//! Datasets in the store, once for both backends: a push stores the file's bytes as the next
//! numbered version (nothing when the latest holds the same bytes), and reads give the versions
//! and their content back. It names no driver; what a valid dataset is, is `inputs::dataset`'s.

use super::Backend;
use crate::model::{DatasetEntry, DatasetVersion};
use crate::store::sql::{Db, Row, all, args, first, json, to_json};
use crate::store::{DatasetStore, Result, StoreError, VersionBuilder};

const DATASET_COLUMNS: &str = "v.id, d.name, v.seq, v.format, v.hash, v.rows, v.columns, v.message, \
     v.created_at, v.created_by, v.dataset_id, v.shape";
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
        dataset_id: row.text(10)?,
        shape: row.text(11)?,
    })
}

/// A dataset with its latest version's time, rows and id; `$1` a name or NULL, `$2` the
/// first id or NULL, `$3` the limit.
const ENTRY_SELECT: &str = "SELECT d.id, d.name, d.description, d.metadata, d.created_at, \
     v.created_at, v.rows, v.id FROM datasets d JOIN dataset_versions v ON v.dataset_id = d.id \
     WHERE v.seq = (SELECT MAX(seq) FROM dataset_versions WHERE dataset_id = d.id)";

fn entry_of(row: &dyn Row) -> Result<DatasetEntry> {
    Ok(DatasetEntry {
        id: row.text(0)?,
        name: row.text(1)?,
        description: row.opt_text(2)?,
        metadata: row.text(3)?,
        created_at: row.text(4)?,
        updated_at: row.text(5)?,
        example_count: row.int(6)?,
        latest_version_id: row.text(7)?,
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
    fn push_dataset_with(
        &self,
        name: &str,
        must_be_new: bool,
        make: &mut VersionBuilder<'_>,
    ) -> Result<(DatasetVersion, bool)> {
        self.write(|db| {
            // Created if missing (filled in below), then locked: two writers of one name, new
            // or not, queue on its row, so the second builds on the first's version.
            let fresh = uuid::Uuid::now_v7().to_string();
            let created = db.exec(
                "INSERT INTO datasets (id, name, created_at, created_by) VALUES ($1, $2, $3, '') \
                 ON CONFLICT (name) DO NOTHING",
                args![&fresh, name, crate::model::now().as_str()],
            )? == 1;
            if !created && must_be_new {
                return Err(StoreError::DatasetExists { name: name.into() });
            }
            let lock = db.dialect().for_update();
            let locked_id = first(
                db,
                &format!("SELECT id FROM datasets WHERE name = $1{lock}"),
                args![name],
                |r| r.text(0),
            )?
            .ok_or_else(|| StoreError::Corrupt("a dataset just written is missing".into()))?;
            let previous = if created {
                None
            } else {
                first(
                    db,
                    &format!(
                        "SELECT {DATASET_COLUMNS}, v.content {DATASET_JOINS} WHERE d.name = $1 \
                         ORDER BY v.seq DESC LIMIT 1"
                    ),
                    args![name],
                    |row| Ok((version_of(row)?, row.text(12)?)),
                )?
            };
            let built = make(previous.as_ref().map(|(v, c)| (v, c.as_str())))?;
            let version = match (built, previous) {
                (None, Some((previous, _))) => return Ok((previous, false)),
                (Some(version), Some((previous, _))) if previous.hash == version.hash => {
                    return Ok((previous, false));
                }
                (Some(version), _) => version,
                // Rolled back with the transaction: no dataset without a version.
                (None, None) => {
                    return Err(StoreError::Corrupt(
                        "a new dataset needs a first version".into(),
                    ));
                }
            };
            let now = version.created_at.clone().unwrap_or_else(crate::model::now);
            let dataset_id = if created {
                // Its fields are the first version's (a copy keeps the source's id).
                let id = version.dataset_id.clone().unwrap_or(locked_id);
                db.exec(
                    "UPDATE datasets SET id = $1, created_at = $2, created_by = $3, \
                     description = $4, metadata = $5 WHERE name = $6",
                    args![
                        &id,
                        &now,
                        &version.author,
                        &version.description,
                        version.metadata.as_deref().unwrap_or("{}"),
                        name
                    ],
                )?;
                id
            } else {
                locked_id
            };
            let seq = first(
                db,
                "SELECT MAX(seq) FROM dataset_versions WHERE dataset_id = $1",
                args![&dataset_id],
                |r| r.opt_int(0),
            )?
            .flatten()
            .map_or(1, |s| s + 1);
            let id = version
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            db.exec(
                "INSERT INTO dataset_versions (id, dataset_id, seq, format, content, hash, rows, \
                 columns, message, created_at, created_by, shape) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
                    &version.author,
                    &version.shape
                ],
            )?;
            let stored = latest(db, name)?
                .ok_or_else(|| StoreError::Corrupt("a pushed dataset version is missing".into()))?;
            Ok((stored, true))
        })
    }

    fn dataset_entries(
        &self,
        name: Option<&str>,
        from: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DatasetEntry>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "{ENTRY_SELECT} AND (CAST($1 AS TEXT) IS NULL OR d.name = $1) \
                     AND (CAST($2 AS TEXT) IS NULL OR d.id <= $2) ORDER BY d.id DESC LIMIT $3"
                ),
                args![name, from, limit as i64],
                entry_of,
            )
        })
    }

    fn dataset_entry(&self, id: &str) -> Result<Option<DatasetEntry>> {
        self.read(|db| {
            first(
                db,
                &format!("{ENTRY_SELECT} AND d.id = $1"),
                args![id],
                entry_of,
            )
        })
    }

    fn dataset_versions_of(
        &self,
        dataset_id: &str,
        from_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DatasetVersion>> {
        self.read(|db| {
            all(
                db,
                &format!(
                    "SELECT {DATASET_COLUMNS} {DATASET_JOINS} WHERE v.dataset_id = $1 \
                     AND (CAST($2 AS BIGINT) IS NULL OR v.seq <= $2) ORDER BY v.seq DESC LIMIT $3"
                ),
                args![dataset_id, from_seq, limit as i64],
                version_of,
            )
        })
    }

    fn dataset_version(&self, id: &str) -> Result<Option<(DatasetVersion, String)>> {
        self.read(|db| {
            first(
                db,
                &format!("SELECT {DATASET_COLUMNS}, v.content {DATASET_JOINS} WHERE v.id = $1"),
                args![id],
                |row| Ok((version_of(row)?, row.text(12)?)),
            )
        })
    }

    fn delete_dataset(&self, id: &str) -> Result<bool> {
        self.write(|db| {
            let lock = db.dialect().for_update();
            let Some(name) = first(
                db,
                &format!("SELECT name FROM datasets WHERE id = $1{lock}"),
                args![id],
                |r| r.text(0),
            )?
            else {
                return Ok(false);
            };
            let prefix = format!("{}{name}@", crate::workflow::datasets::PREFIX);
            let experiments = first(
                db,
                "SELECT COUNT(*) FROM experiments \
                 WHERE substr(dataset_path, 1, length($1)) = $1",
                args![&prefix],
                |r| r.int(0),
            )?
            .unwrap_or(0)
                + first(
                    db,
                    "SELECT COUNT(*) FROM task_experiments WHERE dataset_id = $1",
                    args![id],
                    |r| r.int(0),
                )?
                .unwrap_or(0);
            if experiments > 0 {
                return Err(StoreError::DatasetInUse { name, experiments });
            }
            db.exec(
                "DELETE FROM dataset_versions WHERE dataset_id = $1",
                args![id],
            )?;
            db.exec("DELETE FROM datasets WHERE id = $1", args![id])?;
            Ok(true)
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
            let with_content = |row: &dyn Row| Ok((version_of(row)?, row.text(12)?));
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
                |row| Ok((version_of(row)?, row.text(12)?)),
            )
        })
    }
}
