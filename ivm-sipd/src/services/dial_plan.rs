//! The dial plan (SPEC §3): what a dialed string means. It owns the grammar of IVM numbers —
//! the session id as prefix (`555` + target) or suffix (target + `555`), multi-target lists
//! (`555*t1*t2`), groups, push-to-talk (`556`), instant retrieval (`98` + message id + type) and
//! the mailbox (`98`) — and the target syntax (numbers, E.164, user names, IP literals). Every
//! code comes from a TOML file: `dialplans/default.toml` is embedded, `--dialplan FILE` or
//! `calls.dialplan` replaces it. Resolution is pure: whether a number is a subscriber or goes
//! to a trunk is for the caller of [`DialPlan::resolve`] to decide.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{CallsConfig, line_in_array, line_of};

/// The embedded default dial plan.
pub const DEFAULT_TOML: &str = include_str!("../../../dialplans/default.toml");

/// The longest target accepted (characters).
const MAX_TARGET_LEN: usize = 64;
/// The most digits of an E.164 number (without `+`).
const MAX_E164_DIGITS: usize = 15;

/// What a dialed string asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// Send an IVM (or push-to-talk, when `ptt`) to the targets, in dialed order, without
    /// duplicates. `group` is the group number when the whole dialed target was one group.
    Ivm {
        ptt: bool,
        targets: Vec<Target>,
        group: Option<String>,
    },
    /// Play one message.
    Retrieve { message_id: u32, kind: RetrievalKind },
    /// The caller's mailbox.
    Mailbox,
}

/// One target of an IVM.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Digits: an extension, a subscriber number or an E.164 number (with `+`; a number dialed
    /// with the international prefix is rewritten to `+`). Subscriber or trunk is for the
    /// caller of [`DialPlan::resolve`] to decide.
    Number(String),
    /// A user name (letters, digits and `. _ -`, not all digits).
    User(String),
    /// An IP address literal: the target is `sip:<that address>`.
    Ip(IpAddr),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Number(n) | Target::User(n) => f.write_str(n),
            Target::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Target::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// The type digit of an instant retrieval number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetrievalKind {
    Ivm,
    Voicemail,
    Multimedia,
    Unified,
}

/// Why a dialed string cannot be served; answered with [`DialError::status`] and
/// [`DialError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// 404: nothing is behind this string (the text says why).
    #[error("Not Found ({0})")]
    NotFound(String),
    /// 484: the string is a beginning of something valid.
    #[error("Address Incomplete ({0})")]
    Incomplete(String),
}

impl DialError {
    /// The SIP status code: 404 or 484.
    pub fn status(&self) -> u16 {
        match self {
            DialError::NotFound(_) => 404,
            DialError::Incomplete(_) => 484,
        }
    }

    /// The reason phrase with the detail, e.g. `Address Incomplete (no target after 555)`.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// A dial plan file that cannot be used; the message names the file, the key and its line.
#[derive(Debug, thiserror::Error)]
pub enum DialPlanError {
    #[error("cannot read dial plan {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("dial plan {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

// ---- the file ----

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    #[serde(default)]
    ivm: IvmSection,
    #[serde(default)]
    ptt: PttSection,
    #[serde(default)]
    targets: TargetsSection,
    #[serde(default)]
    retrieval: RetrievalSection,
    #[serde(default)]
    mailbox: MailboxSection,
    #[serde(default)]
    group: Vec<GroupSection>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IvmSection {
    session_id: String,
    suffix: bool,
}

impl Default for IvmSection {
    fn default() -> Self {
        IvmSection {
            session_id: "555".into(),
            suffix: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PttSection {
    session_id: String,
    suffix: bool,
}

impl Default for PttSection {
    fn default() -> Self {
        PttSection {
            session_id: "556".into(),
            suffix: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TargetsSection {
    multi_target: String,
    terminator: String,
    international_prefix: String,
    user_names: bool,
    ip_literals: bool,
}

impl Default for TargetsSection {
    fn default() -> Self {
        TargetsSection {
            multi_target: "*".into(),
            terminator: "#".into(),
            international_prefix: "00".into(),
            user_names: true,
            ip_literals: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RetrievalSection {
    prefix: String,
    message_id_digits: usize,
    types: BTreeMap<String, RetrievalKind>,
}

impl Default for RetrievalSection {
    fn default() -> Self {
        RetrievalSection {
            prefix: "98".into(),
            message_id_digits: 6,
            types: [
                ("1", RetrievalKind::Ivm),
                ("2", RetrievalKind::Voicemail),
                ("3", RetrievalKind::Multimedia),
                ("4", RetrievalKind::Unified),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct MailboxSection {
    number: String,
}

impl Default for MailboxSection {
    fn default() -> Self {
        MailboxSection { number: "98".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupSection {
    number: String,
    #[serde(default)]
    members: Vec<String>,
}

// ---- the compiled plan ----

/// A prefix rule, tried longest first.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Session { ptt: bool },
    Retrieval,
}

/// A loaded dial plan. Cheap to clone (a few strings and the groups).
#[derive(Debug, Clone)]
pub struct DialPlan {
    origin: PathBuf,
    /// Prefix rules, longest prefix first.
    prefixes: Vec<(String, Rule)>,
    /// Session ids accepted as suffix, longest first, with their ptt flag.
    suffixes: Vec<(String, bool)>,
    ivm_session_id: String,
    multi: String,
    terminator: String,
    international_prefix: String,
    user_names: bool,
    ip_literals: bool,
    retrieval_prefix: String,
    message_id_digits: usize,
    types: HashMap<char, RetrievalKind>,
    mailbox: String,
    groups: HashMap<String, Vec<Target>>,
    max_targets: usize,
}

/// Default for [`DialPlan::max_targets`] (`calls.max_targets`).
pub const DEFAULT_MAX_TARGETS: usize = 10;

/// A code that is typed on a keypad or in a URI user part: printable ASCII, no spaces.
fn is_code(s: &str) -> bool {
    !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// A separator or terminator: punctuation that cannot be part of a target.
fn is_separator(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 4
        && s.bytes()
            .all(|b| b.is_ascii_punctuation() && !matches!(b, b'.' | b'_' | b'-' | b'+' | b'[' | b']' | b':'))
}

impl DialPlan {
    /// The embedded `dialplans/default.toml`.
    pub fn embedded() -> DialPlan {
        match DialPlan::from_toml(DEFAULT_TOML, Path::new("(embedded dial plan)")) {
            Ok(plan) => plan,
            // The embedded file is checked by a unit test; this cannot happen in a build
            // that passed its tests, but never panic in the daemon.
            Err(e) => {
                tracing::error!("{e}; using the built-in defaults");
                DialPlan::compile(&PlanFile::default(), "", Path::new("(built-in defaults)"))
                    .unwrap_or_else(|_| DialPlan::minimal())
            }
        }
    }

    /// A plan with only `555` + target: the last resort of [`DialPlan::embedded`].
    fn minimal() -> DialPlan {
        DialPlan {
            origin: PathBuf::from("(minimal)"),
            prefixes: vec![("555".into(), Rule::Session { ptt: false })],
            suffixes: Vec::new(),
            ivm_session_id: "555".into(),
            multi: "*".into(),
            terminator: String::new(),
            international_prefix: String::new(),
            user_names: true,
            ip_literals: true,
            retrieval_prefix: String::new(),
            message_id_digits: 6,
            types: HashMap::new(),
            mailbox: String::new(),
            groups: HashMap::new(),
            max_targets: DEFAULT_MAX_TARGETS,
        }
    }

    /// Reads a dial plan file.
    pub fn load(path: &Path) -> Result<DialPlan, DialPlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| DialPlanError::Read {
            path: path.to_owned(),
            source,
        })?;
        DialPlan::from_toml(&text, path)
    }

    /// The plan `calls.dialplan` names (the embedded one when unset), limited to
    /// `calls.max_targets` targets.
    pub fn from_config(calls: &CallsConfig) -> Result<DialPlan, DialPlanError> {
        let plan = match &calls.dialplan {
            Some(path) => DialPlan::load(path)?,
            None => DialPlan::embedded(),
        };
        Ok(plan.with_max_targets(calls.max_targets))
    }

    /// Parses a dial plan text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<DialPlan, DialPlanError> {
        let file: PlanFile = toml::from_str(text).map_err(|e| DialPlanError::Invalid {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        DialPlan::compile(&file, text, origin)
    }

    /// At most `max` targets per IVM (after group expansion and de-duplication); more is
    /// answered 404. At least 1.
    pub fn with_max_targets(mut self, max: usize) -> DialPlan {
        self.max_targets = max.max(1);
        self
    }

    /// The most targets of one IVM.
    pub fn max_targets(&self) -> usize {
        self.max_targets
    }

    /// Where the plan came from (a path or `(embedded dial plan)`).
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// The members of a group, if `number` is one.
    pub fn group(&self, number: &str) -> Option<&[Target]> {
        self.groups.get(number).map(Vec::as_slice)
    }

    /// The instant retrieval number of a message (`98` + id + type digit), for SMS texts and
    /// the smart caller ID; `None` when retrieval is disabled, the kind has no type digit or
    /// the id has more digits than the plan's message ids.
    pub fn retrieval_number(&self, message_id: u32, kind: RetrievalKind) -> Option<String> {
        if self.retrieval_prefix.is_empty() {
            return None;
        }
        let digit = self.types.iter().filter(|(_, k)| **k == kind).map(|(d, _)| *d).min()?;
        let id = format!("{message_id:0width$}", width = self.message_id_digits);
        (id.len() == self.message_id_digits).then(|| format!("{}{id}{digit}", self.retrieval_prefix))
    }

    /// The mailbox number, unless disabled.
    pub fn mailbox_number(&self) -> Option<&str> {
        (!self.mailbox.is_empty()).then_some(self.mailbox.as_str())
    }

    /// The IVM number that sends to `target` (`555` + target): for replies.
    pub fn ivm_number(&self, target: &str) -> String {
        format!("{}{target}", self.ivm_session_id)
    }

    fn compile(file: &PlanFile, text: &str, origin: &Path) -> Result<DialPlan, DialPlanError> {
        let invalid = |section: &str, key: &str, why: String| {
            let message = match line_of(text, section, key) {
                Some(line) => format!("{section}.{key} (line {line}): {why}"),
                None => format!("{section}.{key}: {why}"),
            };
            DialPlanError::Invalid {
                path: origin.to_owned(),
                message,
            }
        };
        let ivm = &file.ivm.session_id;
        if !is_code(ivm) {
            return Err(invalid(
                "ivm",
                "session_id",
                "must be 1 to 16 printable characters without spaces".into(),
            ));
        }
        let ptt = &file.ptt.session_id;
        if !ptt.is_empty() && !is_code(ptt) {
            return Err(invalid(
                "ptt",
                "session_id",
                "must be empty or 1 to 16 printable characters without spaces".into(),
            ));
        }
        if ptt == ivm {
            return Err(invalid(
                "ptt",
                "session_id",
                format!("must differ from ivm.session_id {ivm:?}"),
            ));
        }
        let t = &file.targets;
        if !t.multi_target.is_empty() && !is_separator(&t.multi_target) {
            return Err(invalid(
                "targets",
                "multi_target",
                "must be empty or up to 4 punctuation characters other than . _ - + [ ] :".into(),
            ));
        }
        if !t.terminator.is_empty() && (!is_separator(&t.terminator) || t.terminator == t.multi_target) {
            return Err(invalid(
                "targets",
                "terminator",
                "must be empty or up to 4 punctuation characters other than . _ - + [ ] : and the multi-target identifier"
                    .into(),
            ));
        }
        if t.international_prefix.len() > 4 || !t.international_prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "targets",
                "international_prefix",
                "must be empty or up to 4 digits".into(),
            ));
        }
        let r = &file.retrieval;
        if !r.prefix.is_empty() {
            if !is_code(&r.prefix) {
                return Err(invalid(
                    "retrieval",
                    "prefix",
                    "must be empty or 1 to 16 printable characters without spaces".into(),
                ));
            }
            if r.prefix == *ivm || r.prefix == *ptt {
                return Err(invalid(
                    "retrieval",
                    "prefix",
                    "must differ from the session ids".into(),
                ));
            }
        }
        if !(1..=9).contains(&r.message_id_digits) {
            return Err(invalid("retrieval", "message_id_digits", "must be 1 to 9".into()));
        }
        let mut types = HashMap::new();
        for (key, kind) in &r.types {
            let mut chars = key.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) if c.is_ascii_digit() => {
                    types.insert(c, *kind);
                }
                _ => {
                    return Err(invalid("retrieval", "types", format!("type {key:?} must be one digit")));
                }
            }
        }
        let m = &file.mailbox.number;
        if !m.is_empty() && !is_code(m) {
            return Err(invalid(
                "mailbox",
                "number",
                "must be empty or 1 to 16 printable characters without spaces".into(),
            ));
        }
        if m == ivm || m == ptt {
            return Err(invalid("mailbox", "number", "must differ from the session ids".into()));
        }

        let mut prefixes = vec![(ivm.clone(), Rule::Session { ptt: false })];
        let mut suffixes = Vec::new();
        if file.ivm.suffix {
            suffixes.push((ivm.clone(), false));
        }
        if !ptt.is_empty() {
            prefixes.push((ptt.clone(), Rule::Session { ptt: true }));
            if file.ptt.suffix {
                suffixes.push((ptt.clone(), true));
            }
        }
        if !r.prefix.is_empty() {
            prefixes.push((r.prefix.clone(), Rule::Retrieval));
        }
        prefixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        suffixes.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));

        let mut plan = DialPlan {
            origin: origin.to_owned(),
            prefixes,
            suffixes,
            ivm_session_id: ivm.clone(),
            multi: t.multi_target.clone(),
            terminator: t.terminator.clone(),
            international_prefix: t.international_prefix.clone(),
            user_names: t.user_names,
            ip_literals: t.ip_literals,
            retrieval_prefix: r.prefix.clone(),
            message_id_digits: r.message_id_digits,
            types,
            mailbox: m.clone(),
            groups: HashMap::new(),
            max_targets: DEFAULT_MAX_TARGETS,
        };

        let group_err = |i: usize, key: &str, why: String| {
            let message = match line_in_array(text, "group", i, key) {
                Some(line) => format!("group[{i}].{key} (line {line}): {why}"),
                None => format!("group[{i}].{key}: {why}"),
            };
            DialPlanError::Invalid {
                path: origin.to_owned(),
                message,
            }
        };
        let numbers: Vec<&str> = file.group.iter().map(|g| g.number.as_str()).collect();
        let mut groups = HashMap::new();
        for (i, g) in file.group.iter().enumerate() {
            let n = &g.number;
            let plain = match plan.parse_target(n) {
                Ok(Target::Number(x) | Target::User(x)) => x == *n,
                _ => false,
            };
            if !plain || (!plan.multi.is_empty() && n.contains(&plan.multi)) {
                return Err(group_err(
                    i,
                    "number",
                    format!("{n:?} must be digits or a user name (letters, digits and . _ -)"),
                ));
            }
            if groups.contains_key(n) {
                return Err(group_err(i, "number", format!("group {n} is defined twice")));
            }
            let mut members = Vec::new();
            for member in &g.members {
                if numbers.contains(&member.as_str()) {
                    return Err(group_err(
                        i,
                        "members",
                        format!("member {member} is itself a group; groups do not nest"),
                    ));
                }
                let target = plan
                    .parse_target(member)
                    .map_err(|e| group_err(i, "members", format!("member {member:?}: {e}")))?;
                if !members.contains(&target) {
                    members.push(target);
                }
            }
            groups.insert(n.clone(), members);
        }
        plan.groups = groups;
        Ok(plan)
    }

    /// What `dialed` (the Request-URI user part, unescaped) asks for.
    ///
    /// Order: a trailing terminator (`#`) is dropped; the mailbox number alone is the mailbox;
    /// then the longest matching prefix (session ids, retrieval prefix) decides; then the
    /// session ids accepted as suffix. A prefix that matches decides even when the rest is
    /// bad (`5551001555` is `555` + `1001555`).
    pub fn resolve(&self, dialed: &str) -> Result<Service, DialError> {
        let s = match self.terminator.as_str() {
            "" => dialed,
            t => dialed.strip_suffix(t).unwrap_or(dialed),
        };
        if s.is_empty() {
            return Err(DialError::NotFound("empty number".into()));
        }
        if !self.mailbox.is_empty() && s == self.mailbox {
            return Ok(Service::Mailbox);
        }
        for (prefix, rule) in &self.prefixes {
            if let Some(rest) = s.strip_prefix(prefix.as_str()) {
                return match rule {
                    Rule::Session { ptt } => self.session(*ptt, prefix, rest, false),
                    Rule::Retrieval => self.retrieval(prefix, rest),
                };
            }
        }
        for (suffix, ptt) in &self.suffixes {
            if let Some(rest) = s.strip_suffix(suffix.as_str()) {
                return self.session(*ptt, suffix, rest, true);
            }
        }
        Err(DialError::NotFound("no IVM service for this number".into()))
    }

    fn session(&self, ptt: bool, sid: &str, rest: &str, as_suffix: bool) -> Result<Service, DialError> {
        let (body, where_) = if as_suffix {
            (
                rest.strip_suffix(self.multi.as_str())
                    .filter(|_| !self.multi.is_empty())
                    .unwrap_or(rest),
                "before",
            )
        } else {
            (
                rest.strip_prefix(self.multi.as_str())
                    .filter(|_| !self.multi.is_empty())
                    .unwrap_or(rest),
                "after",
            )
        };
        if body.is_empty() {
            return Err(DialError::Incomplete(format!("no target {where_} {sid}")));
        }
        let parts: Vec<&str> = if self.multi.is_empty() {
            vec![body]
        } else {
            body.split(self.multi.as_str()).collect()
        };
        let mut targets: Vec<Target> = Vec::new();
        let mut group = None;
        for part in &parts {
            if part.is_empty() {
                return Err(DialError::Incomplete(format!(
                    "empty target in the list after {sid}, between two {:?}",
                    self.multi
                )));
            }
            if let Some(members) = self.groups.get(*part) {
                if members.is_empty() {
                    return Err(DialError::NotFound(format!("group {part} has no members")));
                }
                if parts.len() == 1 {
                    group = Some((*part).to_owned());
                }
                for m in members {
                    if !targets.contains(m) {
                        targets.push(m.clone());
                    }
                }
            } else {
                let t = self.parse_target(part)?;
                if !targets.contains(&t) {
                    targets.push(t);
                }
            }
        }
        if targets.len() > self.max_targets {
            return Err(DialError::NotFound(format!(
                "too many targets ({}, at most {})",
                targets.len(),
                self.max_targets
            )));
        }
        Ok(Service::Ivm { ptt, targets, group })
    }

    fn retrieval(&self, prefix: &str, rest: &str) -> Result<Service, DialError> {
        let need = self.message_id_digits + 1;
        if rest.is_empty() {
            return Err(DialError::Incomplete(format!(
                "no message id after {prefix}: {need} digits expected"
            )));
        }
        if !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DialError::NotFound(format!(
                "a retrieval number is {prefix} + {} digits of message id + 1 type digit",
                self.message_id_digits
            )));
        }
        if rest.len() < need {
            return Err(DialError::Incomplete(format!(
                "{} of {need} digits of message id and type after {prefix}",
                rest.len()
            )));
        }
        if rest.len() > need {
            return Err(DialError::NotFound(format!(
                "{} digits after {prefix}, a retrieval number has {need}",
                rest.len()
            )));
        }
        let (id, kind) = rest.split_at(self.message_id_digits);
        let message_id = id
            .parse::<u32>()
            .map_err(|_| DialError::NotFound(format!("bad message id {id}")))?;
        let digit = kind.chars().next().unwrap_or('0');
        let kind = *self
            .types
            .get(&digit)
            .ok_or_else(|| DialError::NotFound(format!("unknown message type {digit}")))?;
        Ok(Service::Retrieve { message_id, kind })
    }

    /// One target: an IP literal, an E.164 number, digits, or a user name.
    fn parse_target(&self, s: &str) -> Result<Target, DialError> {
        if s.len() > MAX_TARGET_LEN {
            return Err(DialError::NotFound(format!(
                "target longer than {MAX_TARGET_LEN} characters"
            )));
        }
        if self.ip_literals {
            if let Some(inner) = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                return inner
                    .parse::<Ipv6Addr>()
                    .map(|a| Target::Ip(IpAddr::V6(a)))
                    .map_err(|_| DialError::NotFound(format!("{s} is not an IPv6 address")));
            }
            if let Ok(a) = s.parse::<Ipv4Addr>() {
                return Ok(Target::Ip(IpAddr::V4(a)));
            }
            if s.contains(':')
                && let Ok(a) = s.parse::<Ipv6Addr>()
            {
                return Ok(Target::Ip(IpAddr::V6(a)));
            }
        }
        let all_digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if let Some(digits) = s.strip_prefix('+') {
            // RFC 3966 visual separators (`+49-30-123.456`) are dropped.
            let digits: String = digits.chars().filter(|c| !matches!(c, '-' | '.')).collect();
            if all_digits(&digits) && digits.len() <= MAX_E164_DIGITS {
                return Ok(Target::Number(format!("+{digits}")));
            }
            return Err(DialError::NotFound(format!(
                "{s} is not an E.164 number (+ and 1 to {MAX_E164_DIGITS} digits)"
            )));
        }
        if all_digits(s) {
            let intl = self.international_prefix.as_str();
            if !intl.is_empty()
                && let Some(digits) = s.strip_prefix(intl)
                && !digits.is_empty()
            {
                if digits.len() > MAX_E164_DIGITS {
                    return Err(DialError::NotFound(format!(
                        "{s} is not an E.164 number ({intl} and 1 to {MAX_E164_DIGITS} digits)"
                    )));
                }
                return Ok(Target::Number(format!("+{digits}")));
            }
            return Ok(Target::Number(s.to_owned()));
        }
        if self.user_names
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Ok(Target::User(s.to_owned()));
        }
        Err(DialError::NotFound(format!("{s:?} is not a valid target")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> DialPlan {
        DialPlan::from_toml(
            &format!("{DEFAULT_TOML}\n[[group]]\nnumber = \"600\"\nmembers = [\"1001\", \"1002\", \"1001\"]\n\n[[group]]\nnumber = \"601\"\nmembers = []\n"),
            Path::new("t.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn n(s: &str) -> Target {
        Target::Number(s.into())
    }

    fn ivm(targets: Vec<Target>) -> Result<Service, DialError> {
        Ok(Service::Ivm {
            ptt: false,
            targets,
            group: None,
        })
    }

    fn status(r: Result<Service, DialError>) -> u16 {
        r.err().map_or(200, |e| e.status())
    }

    #[test]
    fn embedded_file_is_the_default() {
        let file: PlanFile = toml::from_str(DEFAULT_TOML).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file, PlanFile::default());
        let p = DialPlan::embedded();
        assert_eq!(p.origin(), Path::new("(embedded dial plan)"));
        assert_eq!(p.max_targets(), DEFAULT_MAX_TARGETS);
    }

    #[test]
    fn individual_ivm() {
        let p = plan();
        assert_eq!(p.resolve("5551001"), ivm(vec![n("1001")]));
        assert_eq!(p.resolve("5551001#"), ivm(vec![n("1001")]));
        assert_eq!(p.resolve("555+4930123456"), ivm(vec![n("+4930123456")]));
        assert_eq!(p.resolve("555004930123456"), ivm(vec![n("+4930123456")]));
        assert_eq!(p.resolve("555+49-30-123.456"), ivm(vec![n("+4930123456")]));
        assert_eq!(p.resolve("555alice"), ivm(vec![Target::User("alice".into())]));
        assert_eq!(
            p.resolve("555bob.smith_2-x"),
            ivm(vec![Target::User("bob.smith_2-x".into())])
        );
        assert_eq!(
            p.resolve("555192.0.2.7"),
            ivm(vec![Target::Ip(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)))])
        );
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap_or(Ipv6Addr::UNSPECIFIED);
        assert_eq!(p.resolve("555[2001:db8::7]"), ivm(vec![Target::Ip(IpAddr::V6(v6))]));
        assert_eq!(p.resolve("5552001:db8::7"), ivm(vec![Target::Ip(IpAddr::V6(v6))]));
        assert_eq!(Target::Ip(IpAddr::V6(v6)).to_string(), "[2001:db8::7]");
    }

    #[test]
    fn suffix_form_only_when_enabled() {
        let p = plan();
        assert_eq!(status(p.resolve("1001555")), 404);
        let p = DialPlan::from_toml("[ivm]\nsession_id = \"555\"\nsuffix = true\n", Path::new("s"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.resolve("1001555"), ivm(vec![n("1001")]));
        assert_eq!(p.resolve("1001*1002555"), ivm(vec![n("1001"), n("1002")]));
        assert_eq!(p.resolve("5551001555"), ivm(vec![n("1001555")]), "the prefix wins");
        assert_eq!(status(p.resolve("*555")), 484);
    }

    #[test]
    fn multi_target_and_groups() {
        let p = plan();
        assert_eq!(
            p.resolve("555*1001*1002*+4930123456*alice"),
            ivm(vec![
                n("1001"),
                n("1002"),
                n("+4930123456"),
                Target::User("alice".into())
            ])
        );
        assert_eq!(p.resolve("555*1001"), ivm(vec![n("1001")]));
        assert_eq!(
            p.resolve("5551001*1002"),
            ivm(vec![n("1001"), n("1002")]),
            "leading * optional"
        );
        assert_eq!(
            p.resolve("555*1001*1002*1001"),
            ivm(vec![n("1001"), n("1002")]),
            "deduplicated"
        );
        assert_eq!(
            p.resolve("555600"),
            Ok(Service::Ivm {
                ptt: false,
                targets: vec![n("1001"), n("1002")],
                group: Some("600".into())
            })
        );
        assert_eq!(
            p.resolve("555*600*1003*1002"),
            ivm(vec![n("1001"), n("1002"), n("1003")])
        );
        let e = p.resolve("555601").err();
        assert_eq!(e.as_ref().map(DialError::status), Some(404));
        assert_eq!(
            e.map(|e| e.reason()),
            Some("Not Found (group 601 has no members)".into())
        );
        assert_eq!(p.group("600").map(<[Target]>::len), Some(2));
    }

    #[test]
    fn push_to_talk() {
        let p = plan();
        assert_eq!(
            p.resolve("5561001"),
            Ok(Service::Ivm {
                ptt: true,
                targets: vec![n("1001")],
                group: None
            })
        );
        assert_eq!(
            p.resolve("556*1001*1002"),
            Ok(Service::Ivm {
                ptt: true,
                targets: vec![n("1001"), n("1002")],
                group: None
            })
        );
        assert_eq!(
            p.resolve("556600"),
            Ok(Service::Ivm {
                ptt: true,
                targets: vec![n("1001"), n("1002")],
                group: Some("600".into())
            })
        );
        assert_eq!(status(p.resolve("556")), 484);
    }

    #[test]
    fn retrieval_and_mailbox() {
        let p = plan();
        let r = |id, kind| Ok(Service::Retrieve { message_id: id, kind });
        assert_eq!(p.resolve("981234561"), r(123456, RetrievalKind::Ivm));
        assert_eq!(p.resolve("980000422"), r(42, RetrievalKind::Voicemail));
        assert_eq!(p.resolve("980000423"), r(42, RetrievalKind::Multimedia));
        assert_eq!(p.resolve("980000424#"), r(42, RetrievalKind::Unified));
        assert_eq!(p.resolve("98"), Ok(Service::Mailbox));
        assert_eq!(p.resolve("98#"), Ok(Service::Mailbox));
        assert_eq!(
            p.retrieval_number(42, RetrievalKind::Voicemail),
            Some("980000422".into())
        );
        assert_eq!(p.retrieval_number(1_000_000, RetrievalKind::Ivm), None);
        assert_eq!(p.mailbox_number(), Some("98"));
        assert_eq!(p.ivm_number("1001"), "5551001");
    }

    #[test]
    fn malformed_strings() {
        let p = plan();
        let reason = |s: &str| p.resolve(s).err().map(|e| (e.status(), e.reason()));
        assert_eq!(
            reason("555"),
            Some((484, "Address Incomplete (no target after 555)".into()))
        );
        assert_eq!(reason("555*").map(|r| r.0), Some(484));
        assert_eq!(reason("555#").map(|r| r.0), Some(484));
        assert_eq!(reason("555*1001**1002").map(|r| r.0), Some(484));
        assert_eq!(reason("555*1001*").map(|r| r.0), Some(484));
        assert_eq!(reason("1001").map(|r| r.0), Some(404), "no prefix");
        assert_eq!(reason("").map(|r| r.0), Some(404));
        assert_eq!(reason("9812345").map(|r| r.0), Some(484), "98 + 5 digits");
        assert_eq!(reason("98123456").map(|r| r.0), Some(484), "98 + id, no type");
        assert_eq!(
            reason("981234567"),
            Some((404, "Not Found (unknown message type 7)".into()))
        );
        assert_eq!(reason("9812345612").map(|r| r.0), Some(404), "too long");
        assert_eq!(reason("98abc").map(|r| r.0), Some(404));
        assert_eq!(reason("555+").map(|r| r.0), Some(404));
        assert_eq!(reason("555+49abc").map(|r| r.0), Some(404));
        assert_eq!(reason("555+1234567890123456").map(|r| r.0), Some(404), "16 digits");
        assert_eq!(reason("555al ice").map(|r| r.0), Some(404));
        assert_eq!(reason("555[::1").map(|r| r.0), Some(404));
        assert_eq!(reason("555[1.2.3.4]").map(|r| r.0), Some(404));
        assert_eq!(reason(&format!("555{}", "1".repeat(65))).map(|r| r.0), Some(404));
        let eleven: Vec<String> = (0..11).map(|i| format!("{}", 1000 + i)).collect();
        assert_eq!(
            reason(&format!("555*{}", eleven.join("*"))),
            Some((404, "Not Found (too many targets (11, at most 10))".into()))
        );
        assert!(p.resolve(&format!("555*{}", eleven[..10].join("*"))).is_ok());
        let p3 = p.clone().with_max_targets(3);
        assert_eq!(status(p3.resolve("555*1*2*3*4")), 404);
        assert_eq!(status(p3.resolve("555*1*2*3*3")), 200, "counted after de-duplication");
    }

    #[test]
    fn codes_are_configurable() {
        let p = DialPlan::from_toml(
            "[ivm]\nsession_id = \"*77\"\n[ptt]\nsession_id = \"\"\n[targets]\nmulti_target = \"#\"\nterminator = \"\"\ninternational_prefix = \"\"\nuser_names = false\nip_literals = false\n[retrieval]\nprefix = \"*88\"\nmessage_id_digits = 4\ntypes = { \"5\" = \"voicemail\" }\n[mailbox]\nnumber = \"*89\"\n",
            Path::new("c"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.resolve("*77#1001#1002"), ivm(vec![n("1001"), n("1002")]));
        assert_eq!(p.resolve("*770049301"), ivm(vec![n("0049301")]));
        assert_eq!(status(p.resolve("*77alice")), 404);
        assert_eq!(status(p.resolve("*77192.0.2.1")), 404);
        assert_eq!(status(p.resolve("5561001")), 404, "ptt disabled");
        assert_eq!(status(p.resolve("5551001")), 404);
        assert_eq!(
            p.resolve("*8800125"),
            Ok(Service::Retrieve {
                message_id: 12,
                kind: RetrievalKind::Voicemail
            })
        );
        assert_eq!(status(p.resolve("*8800121")), 404);
        assert_eq!(p.resolve("*89"), Ok(Service::Mailbox));
        assert_eq!(status(p.resolve("98")), 404);
    }

    #[test]
    fn file_errors_name_key_and_line() {
        let err = |t: &str| {
            DialPlan::from_toml(t, Path::new("dp.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err("[ivm]\nsession_id = \"555\"\nprefix = \"1\"\n");
        assert!(
            e.contains("dp.toml") && e.contains("line 3") && e.contains("prefix"),
            "{e}"
        );
        let e = err("[ivm]\n\nsession_id = \"\"\n");
        assert!(e.contains("ivm.session_id (line 3)"), "{e}");
        let e = err("[ptt]\nsession_id = \"555\"\n");
        assert!(e.contains("ptt.session_id (line 2)"), "{e}");
        let e = err("[targets]\nmulti_target = \"1\"\n");
        assert!(e.contains("targets.multi_target (line 2)"), "{e}");
        let e = err("[retrieval]\nmessage_id_digits = 0\n");
        assert!(e.contains("retrieval.message_id_digits (line 2)"), "{e}");
        let e = err("[retrieval]\ntypes = { \"12\" = \"ivm\" }\n");
        assert!(e.contains("retrieval.types (line 2)") && e.contains("\"12\""), "{e}");
        let e = err("[retrieval]\ntypes = { \"1\" = \"fax\" }\n");
        assert!(e.contains("line 2") && e.contains("fax"), "{e}");
        let e = err(
            "[[group]]\nnumber = \"600\"\nmembers = [\"1001\"]\n\n[[group]]\nnumber = \"601\"\nmembers = [\"a b\"]\n",
        );
        assert!(e.contains("group[1].members (line 7)") && e.contains("a b"), "{e}");
        let e = err("[[group]]\nnumber = \"600\"\n[[group]]\nnumber = \"600\"\n");
        assert!(e.contains("group[1].number (line 4)") && e.contains("twice"), "{e}");
        let e = err("[[group]]\nnumber = \"600\"\nmembers = [\"601\"]\n[[group]]\nnumber = \"601\"\n");
        assert!(e.contains("group[0].members (line 3)") && e.contains("nest"), "{e}");
        let e = err("[[group]]\nnumber = \"6*0\"\n");
        assert!(e.contains("group[0].number (line 2)"), "{e}");
        let e = err("[[group]]\nmembers = []\n");
        assert!(e.contains("number"), "{e}");
        let missing = DialPlan::load(Path::new("/nonexistent/dp.toml"))
            .err()
            .map(|e| e.to_string());
        assert!(
            missing.as_deref().is_some_and(|m| m.contains("/nonexistent/dp.toml")),
            "{missing:?}"
        );
    }
}
