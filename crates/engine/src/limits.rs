//! Limits on how much one query may ask of the engine, so that no request,
//! however it is written, can take the memory of the process or hold a
//! connection for long: the bounds the budgeted calls
//! ([`crate::Engine::read_json_budgeted`], [`crate::Engine::summarize_budgeted`])
//! run within, beside their time budget.
//!
//! A request over a limit fails with [`crate::EngineError::OverLimit`]
//! before its cost grows past the limit (the grouping query fetches at most
//! one row beyond it, the group tree stops growing at it, a filter stops
//! compiling at it), so the caller can send it to the site instead.

/// The limits of one budgeted query. The defaults are far above what a
/// pipeline asks: the site's own pages group by at most a few fields, and
/// filter by a few conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Conditions one filter may test, counting each `in` list (and each run
    /// of `is` conditions on one path in an `or` group, which is tested as
    /// one list) as one. The time budget can't cover these: SQLite can't stop
    /// a statement while it prepares it, which grows with its conditions.
    /// Default [`QueryLimits::DEFAULT_MAX_CONDITIONS`] (5,000).
    pub max_conditions: usize,
    /// Grouping levels one `summarize` may name. Default
    /// [`QueryLimits::DEFAULT_MAX_GROUPINGS`] (8).
    pub max_groupings: usize,
    /// Groups one `summarize` may produce: rows of each of its grouping
    /// queries (one per distinct combination of the grouping keys, and per
    /// value of a `status_list` summary within it), and groups in the answer
    /// at all levels together. Default [`QueryLimits::DEFAULT_MAX_GROUPS`] (100,000).
    pub max_groups: usize,
}

impl QueryLimits {
    pub const DEFAULT_MAX_CONDITIONS: usize = 5_000;
    pub const DEFAULT_MAX_GROUPINGS: usize = 8;
    pub const DEFAULT_MAX_GROUPS: usize = 100_000;

    /// No limits at all: what the unbudgeted calls run within.
    pub const UNLIMITED: QueryLimits = QueryLimits {
        max_conditions: usize::MAX,
        max_groupings: usize::MAX,
        max_groups: usize::MAX,
    };
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_conditions: QueryLimits::DEFAULT_MAX_CONDITIONS,
            max_groupings: QueryLimits::DEFAULT_MAX_GROUPINGS,
            max_groups: QueryLimits::DEFAULT_MAX_GROUPS,
        }
    }
}
