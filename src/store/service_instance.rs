//! Loading service instances, which CMDB owns and this worker only reads.

use serde::Deserialize;

use super::{Client, StoreError};

/// One line of `procinst service-instance import`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceInstanceRow {
    pub id: i64,
    pub bk_biz_id: i64,
    #[serde(default = "default_supplier")]
    pub bk_supplier_account: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub service_template_id: i64,
    #[serde(default)]
    pub bk_host_id: i64,
}

fn default_supplier() -> String {
    "0".to_owned()
}

/// Upserts all rows in one transaction: all of them or none.
pub async fn upsert_all(
    client: &mut Client,
    rows: &[ServiceInstanceRow],
) -> Result<u64, StoreError> {
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let biz: Vec<i64> = rows.iter().map(|r| r.bk_biz_id).collect();
    let supplier: Vec<&str> = rows
        .iter()
        .map(|r| r.bk_supplier_account.as_str())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    let templates: Vec<i64> = rows.iter().map(|r| r.service_template_id).collect();
    let hosts: Vec<i64> = rows.iter().map(|r| r.bk_host_id).collect();
    let tx = client.transaction().await?;
    let n = tx
        .execute(
            include_str!("sql/upsert_service_instances.sql"),
            &[&ids, &biz, &supplier, &names, &templates, &hosts],
        )
        .await?;
    tx.commit().await?;
    Ok(n)
}

/// True when the database holds service instances or processes outside a
/// load test's business `biz` (or below its first id `first_id`): data a
/// load test must not be mixed into.
pub async fn has_foreign_rows(
    client: &Client,
    biz: i64,
    first_id: i64,
) -> Result<bool, StoreError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM service_instance WHERE bk_biz_id <> $1 OR id < $2) \
                 OR EXISTS (SELECT 1 FROM process WHERE bk_biz_id <> $1)",
            &[&biz, &first_id],
        )
        .await?;
    Ok(row.get(0))
}
