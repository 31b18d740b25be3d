//! Errors raised while loading and compiling rules.
//!
//! This module owns the one error type of the crate. Every error names the
//! rule source it is about (file path or `builtin:name`), the YAML document
//! within it, and the rule id and title where they could be read, so that a
//! `rules check` command can print one actionable line per rule. Unsupported
//! Sigma features get their own kind, with a stable feature name, because
//! "this engine cannot run it yet" is a different answer from "this rule is
//! broken".

use std::fmt;

/// Why one rule (one YAML document of a source) could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RuleError {
    /// The source the rule came from: a file path or `builtin:name`.
    pub origin: String,
    /// The zero-based index of the YAML document within the source.
    pub document: usize,
    /// The rule's `id`, where it could be read.
    pub rule_id: Option<String>,
    /// The rule's `title`, where it could be read.
    pub title: Option<String>,
    /// What went wrong.
    pub kind: RuleErrorKind,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (document {})", self.origin, self.document)?;
        if let Some(id) = &self.rule_id {
            write!(f, " rule {id}")?;
        }
        if let Some(title) = &self.title {
            write!(f, " \"{title}\"")?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The reason a rule did not compile.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuleErrorKind {
    /// The text is not valid YAML.
    #[error("YAML syntax error: {0}")]
    Yaml(String),
    /// The rule is well-formed YAML but not a valid Sigma rule.
    #[error("invalid rule: {0}")]
    Invalid(String),
    /// The rule is valid Sigma but uses a feature this engine does not run
    /// yet. `feature` is a stable, short name (`modifier:windash`,
    /// `correlation:temporal`, ...) so reports can count by it.
    #[error("unsupported feature: {feature}")]
    Unsupported {
        /// The stable name of the unsupported feature.
        feature: String,
    },
    /// A regular expression (`|re`) did not compile.
    #[error("invalid regular expression: {0}")]
    Regex(String),
    /// A correlation refers to a rule id or name that is not loaded.
    #[error("unknown rule reference: {0}")]
    UnknownReference(String),
    /// An anomaly rule (`anomaly:` section) has a missing, unknown or
    /// out-of-range setting. `key` names the setting (`anomaly.bucket`,
    /// `anomaly.threshold.zscore`, ...).
    #[error("invalid anomaly rule: '{key}': {reason}")]
    Anomaly {
        /// The setting the error is about.
        key: String,
        /// What is wrong with it and what is accepted.
        reason: String,
    },
    /// Another rule loaded earlier has the same id or name.
    #[error("duplicate rule id or name: {0}")]
    Duplicate(String),
}

impl RuleErrorKind {
    /// Shorthand for an [`RuleErrorKind::Unsupported`] error.
    pub(crate) fn unsupported(feature: impl Into<String>) -> Self {
        RuleErrorKind::Unsupported {
            feature: feature.into(),
        }
    }

    /// Shorthand for an [`RuleErrorKind::Anomaly`] error.
    pub(crate) fn anomaly(key: impl Into<String>, reason: impl Into<String>) -> Self {
        RuleErrorKind::Anomaly {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for an [`RuleErrorKind::Invalid`] error.
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        RuleErrorKind::Invalid(reason.into())
    }
}
