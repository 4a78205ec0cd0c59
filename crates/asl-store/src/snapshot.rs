//! Snapshots: a log position plus what the operator needs to know about it.

/// A retained snapshot: `(SnapshotID, LogPosition)` and metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub id: u64,
    /// The logseq of the SNAPSHOT record; the snapshot sees every record before it.
    pub logseq: u64,
    /// The artifact the snapshot is about (an intake's root tree, a receipt ...).
    pub root: Option<crate::Reference>,
    pub meta: SnapshotMeta,
}

/// Metadata stored as JSON in the SNAPSHOT record. Unknown fields are ignored on read so
/// that newer writers can add some.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMeta {
    /// What made it: `intake`, `capture`, ...
    #[serde(default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default)]
    pub host: String,
    /// UTC time of the commit, RFC 3339.
    #[serde(default)]
    pub time: String,
    /// The paths taken in, as given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Free-form figures (files, bytes ...), kept as given.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub summary: serde_json::Value,
    /// The key a remote client chose for this commit: a retried commit carrying the same key
    /// finds this snapshot instead of making a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_key: Option<String>,
}

impl SnapshotMeta {
    /// Metadata with host name and current time filled in.
    pub fn now(kind: &str) -> SnapshotMeta {
        SnapshotMeta {
            kind: kind.into(),
            host: hostname(),
            time: rfc3339_now(),
            ..SnapshotMeta::default()
        }
    }
}

/// Resolves a snapshot name among `snapshots` (by id): a numeric id (`#` allowed before it),
/// `latest`, or a label (the latest snapshot carrying it).
pub fn resolve<'a>(
    snapshots: &'a std::collections::BTreeMap<u64, Snapshot>,
    name: &str,
) -> crate::Result<&'a Snapshot> {
    use crate::StoreError;
    let latest = || {
        snapshots
            .values()
            .next_back()
            .ok_or(StoreError::NoSnapshots)
    };
    if snapshots.is_empty() {
        return Err(StoreError::NoSnapshots);
    }
    if name == "latest" {
        return latest();
    }
    let trimmed = name.trim_start_matches('#');
    if let Ok(id) = trimmed.parse::<u64>() {
        return snapshots
            .get(&id)
            .ok_or_else(|| StoreError::NoSuchSnapshot(name.to_string()));
    }
    snapshots
        .values()
        .rev()
        .find(|s| s.meta.label.as_deref() == Some(name))
        .ok_or_else(|| StoreError::NoSuchSnapshot(name.to_string()))
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The current UTC time as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339_now() -> String {
    format!("{:.0}", jiff::Timestamp::now())
}

/// Formats seconds since the epoch as RFC 3339 UTC, `2026-11-18T11:06:40Z`. A time outside
/// the years -9999..=9999 (a corrupt or hostile mtime) is shown as `@SECONDS` instead.
pub fn rfc3339(secs: i64) -> String {
    match jiff::Timestamp::from_second(secs) {
        Ok(t) => format!("{t:.0}"),
        Err(_) => format!("@{secs}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_000_000), "2026-11-18T11:06:40Z");
        assert_eq!(super::rfc3339(-1), "1969-12-31T23:59:59Z");
        assert_eq!(super::rfc3339(i64::MAX), format!("@{}", i64::MAX));
    }
}
