//! Action classification: read-only, mutating with ClientToken support, or mutating without.
//!
//! The built-in table is gpdb 2016-05-03 (PROTOCOL.md §5): 136 read-only actions of the Tea SDK
//! plus two legacy-only ones, and the 12 actions that accept a `ClientToken` (with the place
//! the Tea SDK puts it). Every other action, and every action of another API version, is
//! mutating without a token: the safe side, never retried once sent. Config overrides win.

use std::collections::HashMap;

use super::params::Place;

/// The API version the built-in table describes.
pub const GPDB_VERSION: &str = "2016-05-03";

/// How an action may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionClass {
    /// No side effect: retried freely on transient failure.
    ReadOnly,
    /// Mutating, but the API deduplicates it by `ClientToken`, which travels at this place
    /// when the SDK sends it (V3) or when a V1 caller uses both query and body.
    Token(Place),
    /// Mutating without idempotence support: retried only where the server surely did not act.
    Mutating,
}

impl ActionClass {
    /// A short label for logs, headers and metrics.
    pub fn label(self) -> &'static str {
        match self {
            ActionClass::ReadOnly => "read-only",
            ActionClass::Token(_) => "token",
            ActionClass::Mutating => "mutating",
        }
    }
}

/// gpdb 2016-05-03 read-only actions.
const READ_ONLY: &[&str] = &[
    "CheckHadoopDataSource",
    "CheckHadoopNetConnection",
    "CheckJDBCSourceNetConnection",
    "CheckSaasServiceVersion",
    "CheckServiceLinkedRole",
    "DescribeAIService",
    "DescribeAccounts",
    "DescribeActiveSQLRecords",
    "DescribeAvailableResources",
    "DescribeBackupJob",
    "DescribeBackupPolicy",
    "DescribeBranch",
    "DescribeCollection",
    "DescribeCreateIndexJob",
    "DescribeDBClusterNode",
    "DescribeDBClusterPerformance",
    "DescribeDBInstanceAttribute",
    "DescribeDBInstanceDataBloat",
    "DescribeDBInstanceDataSkew",
    "DescribeDBInstanceDiagnosisSummary",
    "DescribeDBInstanceErrorLog",
    "DescribeDBInstanceIPArrayList",
    "DescribeDBInstanceIndexUsage",
    "DescribeDBInstanceNetInfo",
    "DescribeDBInstancePerformance",
    "DescribeDBInstancePlans",
    "DescribeDBInstanceSSL",
    "DescribeDBInstanceSupportMaxPerformance",
    "DescribeDBInstances",
    "DescribeDBResourceGroup",
    "DescribeDBResourceManagementMode",
    "DescribeDBVersion",
    "DescribeDBVersionInfos",
    "DescribeDataBackups",
    "DescribeDataReDistributeInfo",
    "DescribeDataShareInstances",
    "DescribeDataSharePerformance",
    "DescribeDatabase",
    "DescribeDiagnosisDimensions",
    "DescribeDiagnosisMonitorPerformance",
    "DescribeDiagnosisRecords",
    "DescribeDiagnosisSQLInfo",
    "DescribeDocument",
    "DescribeDownloadRecords",
    "DescribeDownloadSQLLogs",
    "DescribeExtension",
    "DescribeExternalDataService",
    "DescribeHadoopClustersInSameNet",
    "DescribeHadoopConfigs",
    "DescribeHadoopDataSource",
    "DescribeHealthStatus",
    "DescribeIMVInfos",
    "DescribeIndex",
    "DescribeJDBCDataSource",
    "DescribeLogBackups",
    "DescribeModelOperatorApiKey",
    "DescribeModelOperatorUsage",
    "DescribeModelService",
    "DescribeModifyParameterLog",
    "DescribeNamespace",
    "DescribeParameters",
    "DescribePrivateRAGService",
    "DescribeRdsVSwitchs",
    "DescribeRdsVpcs",
    "DescribeRebalanceStatus",
    "DescribeRegions",
    "DescribeRoles",
    "DescribeSQLLogCount",
    "DescribeSQLLogs",
    "DescribeSQLLogsV2",
    "DescribeSampleData",
    "DescribeStreamingDataService",
    "DescribeStreamingDataSource",
    "DescribeStreamingJob",
    "DescribeSupabaseBackupPolicy",
    "DescribeSupportFeatures",
    "DescribeTable",
    "DescribeTags",
    "DescribeUserEncryptionKeyList",
    "DescribeWaitingSQLInfo",
    "DescribeWaitingSQLRecords",
    "DescribeZonesPrivateRAGService",
    "GetAccount",
    "GetApiEndpoints",
    "GetApiKey",
    "GetBranchSchema",
    "GetGraphRAGJob",
    "GetSaasService",
    "GetSecretValue",
    "GetServiceAccessInfo",
    "GetStatementResult",
    "GetSupabaseProject",
    "GetSupabaseProjectApiKeys",
    "GetSupabaseProjectDashboardAccount",
    "GetSupabaseProjectSpec",
    "GetSupabaseUpdateVersion",
    "GetUploadDocumentJob",
    "GetUpsertCollectionDataJob",
    "GetWorkspace",
    "ListAINodePools",
    "ListAIServices",
    "ListApiKeys",
    "ListBackupJobs",
    "ListBranches",
    "ListChunks",
    "ListCollections",
    "ListDatabaseExtensions",
    "ListDatabases",
    "ListDocumentCollections",
    "ListDocuments",
    "ListExternalDataServices",
    "ListExternalDataSources",
    "ListIndices",
    "ListInstanceDatabases",
    "ListInstanceExtensions",
    "ListModelOperatorApiKeys",
    "ListModelOperatorServices",
    "ListModelServices",
    "ListNamespaces",
    "ListRemoteADBDataSources",
    "ListSaasService",
    "ListSchemas",
    "ListSecrets",
    "ListSlowSQLRecords",
    "ListStreamingDataServices",
    "ListStreamingDataSources",
    "ListStreamingJobs",
    "ListSupabaseBackupJobs",
    "ListSupabaseDataBackups",
    "ListSupabaseProjectTags",
    "ListSupabaseProjects",
    "ListSupportModels",
    "ListTables",
    "ListTagResources",
    "ListWorkspaces",
    "QueryCollectionData",
    "QueryContent",
    "QueryKnowledgeBasesContent",
];

/// gpdb 2016-05-03 actions that accept a `ClientToken`, and where the Tea SDK puts it.
const TOKEN: &[(&str, Place)] = &[
    ("CreateBranch", Place::Query),
    ("CreateDBInstance", Place::Query),
    ("CreateModelService", Place::Body),
    ("CreateSnapshot", Place::Query),
    ("CreateSupabaseProject", Place::Query),
    ("DeleteDBInstance", Place::Query),
    ("ModifyAccountDescription", Place::Query),
    ("ModifyDBInstanceConnectionString", Place::Query),
    ("RebalanceDBInstance", Place::Query),
    ("RestartDBInstance", Place::Query),
    ("RestoreBranch", Place::Query),
    ("RestoreSnapshot", Place::Query),
];

/// Classifies actions: config overrides first, then the built-in gpdb table.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    overrides: HashMap<String, ActionClass>,
}

impl Classifier {
    /// A classifier with the given per-action overrides (they apply to every API version).
    pub fn new(overrides: HashMap<String, ActionClass>) -> Self {
        Classifier { overrides }
    }

    /// Classifies `action` of API `version`.
    pub fn classify(&self, version: &str, action: &str) -> ActionClass {
        if let Some(c) = self.overrides.get(action) {
            return *c;
        }
        if version != GPDB_VERSION {
            return ActionClass::Mutating;
        }
        builtin(action).unwrap_or(ActionClass::Mutating)
    }
}

fn builtin(action: &str) -> Option<ActionClass> {
    if READ_ONLY.binary_search(&action).is_ok() {
        return Some(ActionClass::ReadOnly);
    }
    TOKEN
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(_, place)| ActionClass::Token(*place))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_table_is_sorted_and_complete() {
        assert!(READ_ONLY.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(READ_ONLY.len(), 138);
        let prefixes = ["Describe", "List", "Get", "Query", "Check"];
        assert!(
            READ_ONLY
                .iter()
                .all(|a| prefixes.iter().any(|p| a.starts_with(p)))
        );
    }

    #[test]
    fn builtin_classes() {
        let c = Classifier::default();
        assert_eq!(
            c.classify(GPDB_VERSION, "DescribeDBInstances"),
            ActionClass::ReadOnly
        );
        assert_eq!(
            c.classify(GPDB_VERSION, "CreateDBInstance"),
            ActionClass::Token(Place::Query)
        );
        assert_eq!(
            c.classify(GPDB_VERSION, "CreateModelService"),
            ActionClass::Token(Place::Body)
        );
        assert_eq!(
            c.classify(GPDB_VERSION, "CreateAccount"),
            ActionClass::Mutating
        );
        assert_eq!(
            c.classify(GPDB_VERSION, "ExecuteStatement"),
            ActionClass::Mutating
        );
        assert_eq!(TOKEN.len(), 12);
    }

    #[test]
    fn unknown_actions_and_versions_are_mutating() {
        let c = Classifier::default();
        assert_eq!(
            c.classify(GPDB_VERSION, "DescribeSomethingNew"),
            ActionClass::Mutating
        );
        assert_eq!(
            c.classify("2014-05-26", "DescribeRegions"),
            ActionClass::Mutating
        );
    }

    #[test]
    fn overrides_win() {
        let c = Classifier::new(HashMap::from([
            ("CreateAccount".to_owned(), ActionClass::Token(Place::Query)),
            ("DescribeRegions".to_owned(), ActionClass::ReadOnly),
        ]));
        assert_eq!(
            c.classify(GPDB_VERSION, "CreateAccount"),
            ActionClass::Token(Place::Query)
        );
        assert_eq!(
            c.classify("2014-05-26", "DescribeRegions"),
            ActionClass::ReadOnly
        );
    }
}
