//! Log source mapping: which events a rule's `logsource` lets it see.
//!
//! This module owns the translation of a Sigma `logsource` (product,
//! category, service) into conditions on the event, from a built-in table
//! ([`BUILTIN_LOGSOURCES`], documented in `rules/LOGSOURCES.md`) extended by
//! [`LogsourceMapping`]s the engine loads from its configuration. It must
//! not guess: a rule whose log source no mapping covers is refused at
//! compile time (`Unsupported { feature: "logsource ..." }`) instead of
//! being run against every event, so loading all of SigmaHQ does not turn
//! Windows rules loose on Linux syslog.
//!
//! A mapping matches a rule when its product, category and service are each
//! equal (ASCII case-insensitively) to the rule's, an absent one equal only
//! to an absent one. Configured mappings are tried before the built-in ones,
//! so configuration can override them. A rule with no `logsource` at all
//! is not restricted (hand-written local rules often have none).
//!
//! A mapping's conditions are an OR of alternatives, each an AND of
//! "field equals one of these values" (case-insensitive, fields resolved as
//! in [`crate::field`]). No alternatives means no restriction.

use crate::detection::RequiredLiteral;
use crate::error::RuleErrorKind;
use crate::event::Event;
use crate::field::{aliases_of, folded_eq, folded_hash, name_hash, FieldName, FieldTableBuilder};
use crate::matcher::AnyNeedle;
use crate::pattern::Scratch;

/// One log source mapping, as the engine's configuration states it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogsourceMapping {
    /// `logsource.product` this mapping is for (`None`: the rule has none).
    pub product: Option<String>,
    /// `logsource.category` this mapping is for.
    pub category: Option<String>,
    /// `logsource.service` this mapping is for.
    pub service: Option<String>,
    /// OR of alternatives; each is an AND of `(field, any of values)`.
    /// Empty: the rule sees every event.
    pub conditions: Vec<Vec<(String, Vec<String>)>>,
}

/// One built-in row: product, category, service, and the conditions.
type BuiltinRow = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static [&'static [(&'static str, &'static [&'static str])]],
);

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";

/// Windows PowerShell 5 and PowerShell 7 (Core) operational logs.
const POWERSHELL_CHANNELS: &[&str] = &[
    "Microsoft-Windows-PowerShell/Operational",
    "PowerShellCore/Operational",
];

/// The Windows Sysmon categories: the category and its Sysmon event ids.
const SYSMON_CATEGORIES: &[(&str, &[&str])] = &[
    ("network_connection", &["3"]),
    ("process_termination", &["5"]),
    ("driver_load", &["6"]),
    ("image_load", &["7"]),
    ("create_remote_thread", &["8"]),
    ("raw_access_thread", &["9"]),
    ("process_access", &["10"]),
    ("file_event", &["11"]),
    ("registry_add", &["12"]),
    ("registry_delete", &["12"]),
    ("registry_set", &["13"]),
    ("registry_rename", &["14"]),
    ("registry_event", &["12", "13", "14"]),
    ("create_stream_hash", &["15"]),
    ("pipe_created", &["17", "18"]),
    ("wmi_event", &["19", "20", "21"]),
    ("dns_query", &["22"]),
    ("file_delete", &["23", "26"]),
    ("clipboard_capture", &["24"]),
    ("process_tampering", &["25"]),
    ("file_delete_detected", &["26"]),
    ("file_block_executable", &["27"]),
    ("file_block_shredding", &["28"]),
    ("file_executable_detected", &["29"]),
    ("file_change", &["2"]),
    ("file_access", &["11"]),
    ("sysmon_status", &["4", "16"]),
    ("sysmon_error", &["255"]),
];

/// `product: windows` services of the Sigma taxonomy appendix (plus the
/// two spellings SigmaHQ rules use that it does not list): the service
/// and the event log channels it means.
const WINDOWS_SERVICES: &[(&str, &[&str])] = &[
    (
        "application-experience",
        &[
            "Microsoft-Windows-Application-Experience/Program-Telemetry",
            "Microsoft-Windows-Application-Experience/Program-Compatibility-Assistant",
        ],
    ),
    (
        "applocker",
        &[
            "Microsoft-Windows-AppLocker/MSI and Script",
            "Microsoft-Windows-AppLocker/EXE and DLL",
            "Microsoft-Windows-AppLocker/Packaged app-Deployment",
            "Microsoft-Windows-AppLocker/Packaged app-Execution",
        ],
    ),
    (
        "appmodel-runtime",
        &["Microsoft-Windows-AppModel-Runtime/Admin"],
    ),
    (
        "appxdeployment-server",
        &["Microsoft-Windows-AppXDeploymentServer/Operational"],
    ),
    (
        "appxpackaging-om",
        &["Microsoft-Windows-AppxPackaging/Operational"],
    ),
    (
        "bitlocker",
        &["Microsoft-Windows-BitLocker/BitLocker Management"],
    ),
    (
        "bits-client",
        &["Microsoft-Windows-Bits-Client/Operational"],
    ),
    ("capi2", &["Microsoft-Windows-CAPI2/Operational"]),
    (
        "certificateservicesclient-lifecycle-system",
        &["Microsoft-Windows-CertificateServicesClient-Lifecycle-System/Operational"],
    ),
    (
        "codeintegrity-operational",
        &["Microsoft-Windows-CodeIntegrity/Operational"],
    ),
    ("dhcp", &["Microsoft-Windows-DHCP-Server/Operational"]),
    (
        "diagnosis-scripted",
        &["Microsoft-Windows-Diagnosis-Scripted/Operational"],
    ),
    (
        "dns-client",
        &["Microsoft-Windows-DNS Client Events/Operational"],
    ),
    ("dns-server", &["DNS Server"]),
    (
        "dns-server-analytic",
        &["Microsoft-Windows-DNS-Server/Analytical"],
    ),
    ("dns-server-audit", &["Microsoft-Windows-DNS-Server/Audit"]),
    (
        "driver-framework",
        &["Microsoft-Windows-DriverFrameworks-UserMode/Operational"],
    ),
    (
        "firewall-as",
        &["Microsoft-Windows-Windows Firewall With Advanced Security/Firewall"],
    ),
    ("hyper-v-worker", &["Microsoft-Windows-Hyper-V-Worker"]),
    (
        "iis-configuration",
        &["Microsoft-IIS-Configuration/Operational"],
    ),
    (
        "kernel-event-tracing",
        &["Microsoft-Windows-Kernel-EventTracing"],
    ),
    (
        "kernel-shimengine",
        &[
            "Microsoft-Windows-Kernel-ShimEngine/Operational",
            "Microsoft-Windows-Kernel-ShimEngine/Diagnostic",
            "WinEventLog:Microsoft-Windows-Kernel-ShimEngine/Diagnostic",
        ],
    ),
    ("ldap", &["Microsoft-Windows-LDAP-Client/Debug"]),
    ("lsa-server", &["Microsoft-Windows-LSA/Operational"]),
    ("msexchange-management", &["MSExchange Management"]),
    ("ntfs", &["Microsoft-Windows-Ntfs/Operational"]),
    ("ntlm", &["Microsoft-Windows-NTLM/Operational"]),
    ("openssh", &["OpenSSH/Operational"]),
    (
        "printservice-admin",
        &["Microsoft-Windows-PrintService/Admin"],
    ),
    (
        "printservice-operational",
        &["Microsoft-Windows-PrintService/Operational"],
    ),
    (
        "security-mitigations",
        &[
            "Microsoft-Windows-Security-Mitigations/Kernel Mode",
            "Microsoft-Windows-Security-Mitigations/User Mode",
        ],
    ),
    ("sense", &["Microsoft-Windows-SENSE/Operational"]),
    (
        "servicebus-client",
        &[
            "Microsoft-ServiceBus-Client/Operational",
            "Microsoft-ServiceBus-Client/Admin",
        ],
    ),
    (
        "microsoft-servicebus-client",
        &[
            "Microsoft-ServiceBus-Client/Operational",
            "Microsoft-ServiceBus-Client/Admin",
        ],
    ),
    ("shell-core", &["Microsoft-Windows-Shell-Core/Operational"]),
    (
        "smbclient-security",
        &["Microsoft-Windows-SmbClient/Security"],
    ),
    (
        "smbserver-connectivity",
        &["Microsoft-Windows-SmbServer/Connectivity"],
    ),
    (
        "taskscheduler",
        &["Microsoft-Windows-TaskScheduler/Operational"],
    ),
    (
        "terminalservices-localsessionmanager",
        &["Microsoft-Windows-TerminalServices-LocalSessionManager/Operational"],
    ),
    ("vhdmp", &["Microsoft-Windows-VHDMP/Operational"]),
    (
        "windefend",
        &["Microsoft-Windows-Windows Defender/Operational"],
    ),
    ("wmi", &["Microsoft-Windows-WMI-Activity/Operational"]),
];

/// Sysmon for Linux's event log channel.
const LINUX_SYSMON: &str = "Linux-Sysmon/Operational";

/// `product: linux` categories of the taxonomy appendix, which Sysmon for
/// Linux records: the category and its event id.
const LINUX_SYSMON_CATEGORIES: &[(&str, &[&str])] = &[
    ("process_creation", &["1"]),
    ("network_connection", &["3"]),
    ("process_termination", &["5"]),
    ("file_event", &["11"]),
    ("file_delete", &["23"]),
];

/// Product, category, service and the `event.dataset` value they mean.
type DatasetRow = (
    Option<&'static str>,
    Option<&'static str>,
    Option<&'static str>,
    &'static str,
);

/// Cloud, SaaS, sensor and honeypot records, which the engine recognises
/// by field names of their own and marks with the ECS dataset
/// (`event.dataset`; Elastic's integrations use the same values): product,
/// category, service, and the dataset value.
const DATASET_LOGSOURCES: &[DatasetRow] = &[
    (Some("aws"), None, Some("cloudtrail"), "aws.cloudtrail"),
    (Some("okta"), None, Some("okta"), "okta.system"),
    (Some("github"), None, Some("audit"), "github.audit"),
    (Some("bitbucket"), None, Some("audit"), "bitbucket.audit"),
    (
        Some("azure"),
        None,
        Some("activitylogs"),
        "azure.activitylogs",
    ),
    (Some("opencanary"), Some("application"), None, "opencanary"),
    (Some("zeek"), None, Some("dns"), "zeek.dns"),
    (Some("zeek"), None, Some("http"), "zeek.http"),
    (Some("zeek"), None, Some("smb_files"), "zeek.smb_files"),
    (Some("zeek"), None, Some("dce_rpc"), "zeek.dce_rpc"),
    (Some("zeek"), None, Some("kerberos"), "zeek.kerberos"),
    (
        Some("kubernetes"),
        Some("application"),
        Some("audit"),
        "kubernetes.audit_logs",
    ),
    (
        Some("kubernetes"),
        None,
        Some("audit"),
        "kubernetes.audit_logs",
    ),
];

/// The built-in mappings. See `rules/LOGSOURCES.md`.
pub const BUILTIN_LOGSOURCES: &[BuiltinRow] = &[
    // Linux syslog: the syslog app name (`process.name`) says which daemon
    // wrote the line.
    (
        Some("linux"),
        None,
        Some("sshd"),
        &[&[("process.name", &["sshd"])]],
    ),
    (None, None, Some("sshd"), &[&[("process.name", &["sshd"])]]),
    (
        Some("linux"),
        None,
        Some("sudo"),
        &[&[("process.name", &["sudo"])]],
    ),
    (
        Some("linux"),
        None,
        Some("su"),
        &[&[("process.name", &["su"])]],
    ),
    (
        Some("linux"),
        None,
        Some("cron"),
        &[&[("process.name", &["cron", "crond", "anacron"])]],
    ),
    (
        Some("linux"),
        None,
        Some("auth"),
        &[&[(
            "process.name",
            &[
                "sshd",
                "sudo",
                "su",
                "login",
                "passwd",
                "systemd-logind",
                "unix_chkpwd",
                "polkitd",
                "useradd",
                "userdel",
                "usermod",
                "groupadd",
                "chpasswd",
                "chage",
            ],
        )]],
    ),
    (
        Some("linux"),
        None,
        Some("auditd"),
        &[&[("process.name", &["auditd", "audispd", "audisp-syslog"])]],
    ),
    (
        Some("linux"),
        None,
        Some("vsftpd"),
        &[&[("process.name", &["vsftpd"])]],
    ),
    (
        Some("linux"),
        None,
        Some("clamav"),
        &[&[(
            "process.name",
            &[
                "clamd",
                "freshclam",
                "clamav-milter",
                "clamonacc",
                "clamscan",
            ],
        )]],
    ),
    (
        Some("linux"),
        None,
        Some("guacamole"),
        &[&[("process.name", &["guacd"])]],
    ),
    // Web servers' error logs sent to syslog: the daemon's tag.
    (
        None,
        None,
        Some("apache"),
        &[&[("process.name", &["apache", "apache2", "httpd"])]],
    ),
    (
        None,
        None,
        Some("nginx"),
        &[&[("process.name", &["nginx"])]],
    ),
    // Every line that reaches the appliance is syslog, and a bare
    // `product: linux` cannot be checked (the host OS is unknown): neither
    // restricts. Rules with these log sources search the message.
    (Some("linux"), None, Some("syslog"), &[]),
    (Some("linux"), None, None, &[]),
    // Windows events forwarded as JSON: the event log channel.
    (
        Some("windows"),
        None,
        Some("security"),
        &[&[("Channel", &["Security"])]],
    ),
    (
        Some("windows"),
        None,
        Some("system"),
        &[&[("Channel", &["System"])]],
    ),
    (
        Some("windows"),
        None,
        Some("sysmon"),
        &[&[("Channel", &[SYSMON])]],
    ),
    (
        Some("windows"),
        None,
        Some("powershell"),
        &[&[("Channel", &["Microsoft-Windows-PowerShell/Operational"])]],
    ),
    (
        Some("windows"),
        None,
        Some("powershell-classic"),
        &[&[("Channel", &["Windows PowerShell"])]],
    ),
    (
        Some("windows"),
        None,
        Some("application"),
        &[&[("Channel", &["Application"])]],
    ),
    (
        Some("windows"),
        Some("process_creation"),
        None,
        &[
            &[("Channel", &[SYSMON]), ("EventID", &["1"])],
            &[("Channel", &["Security"]), ("EventID", &["4688"])],
        ],
    ),
    (
        Some("windows"),
        Some("ps_script"),
        None,
        &[&[("Channel", POWERSHELL_CHANNELS), ("EventID", &["4104"])]],
    ),
    (
        Some("windows"),
        Some("ps_module"),
        None,
        &[&[("Channel", POWERSHELL_CHANNELS), ("EventID", &["4103"])]],
    ),
    (
        Some("windows"),
        Some("ps_classic_start"),
        None,
        &[&[("Channel", &["Windows PowerShell"]), ("EventID", &["400"])]],
    ),
    (
        Some("windows"),
        Some("ps_classic_provider_start"),
        None,
        &[&[("Channel", &["Windows PowerShell"]), ("EventID", &["600"])]],
    ),
    (
        Some("windows"),
        Some("ps_classic_script"),
        None,
        &[&[("Channel", &["Windows PowerShell"]), ("EventID", &["800"])]],
    ),
    // Network and web devices: the event category the engine's extractors
    // (or the sender's JSON) set.
    (
        None,
        Some("firewall"),
        None,
        &[&[("event.category", &["network", "firewall"])]],
    ),
    (
        None,
        Some("webserver"),
        None,
        &[&[("event.category", &["web"])]],
    ),
    (
        None,
        Some("proxy"),
        None,
        &[&[("event.category", &["proxy", "web"])]],
    ),
];

/// A field and the lowercased values it may have.
type FieldValues = (FieldName, Vec<Box<[u8]>>);

/// The compiled condition of one rule's log source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogsourceFilter {
    /// OR of ANDs of (field, lowercased allowed values). Empty: no limit.
    alternatives: Vec<Vec<FieldValues>>,
}

impl LogsourceFilter {
    /// Interns every field name the filter reads into `table`.
    pub(crate) fn intern_fields(&mut self, table: &mut FieldTableBuilder) {
        for (field, _) in self.alternatives.iter_mut().flatten() {
            table.intern(field);
        }
    }

    /// Whether the event is from this log source (`scratch` as for
    /// `Detection::matches`).
    pub(crate) fn matches(&self, event: &Event<'_>, scratch: &Scratch) -> bool {
        self.alternatives.is_empty()
            || self.alternatives.iter().any(|all| {
                all.iter().all(|(field, values)| {
                    scratch.field(field, event).is_some_and(|value| {
                        values
                            .iter()
                            .any(|allowed| value.eq_ignore_ascii_case(allowed))
                    })
                })
            })
    }

    /// Whether the filter lets every event through.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.alternatives.is_empty()
    }

    fn compile<'a>(
        alternatives: impl Iterator<Item = impl Iterator<Item = (&'a str, Vec<&'a str>)>>,
    ) -> Self {
        LogsourceFilter {
            alternatives: alternatives
                .map(|all| {
                    all.map(|(field, values)| {
                        (
                            FieldName::new(field),
                            values
                                .into_iter()
                                .map(|v| v.as_bytes().to_ascii_lowercase().into_boxed_slice())
                                .collect(),
                        )
                    })
                    .collect()
                })
                .collect(),
        }
    }
}

/// The fields a syslog header gives an event before its payload is
/// decoded (`shardwatch_net::header_fields`), in this order: the values a
/// `HeaderGate` is asked about.
pub const HEADER_FIELDS: [&str; 4] = [
    "host.name",
    "process.name",
    "process.pid",
    "log.syslog.msgid",
];

/// How a line's payload names its fields, as far as the header gate
/// needs to know: the engine's aliases (a field `from` copied beside
/// itself as `to`) and the names some decoder or the engine gives a field
/// without that name's text being in the line (a CEF header name, a
/// free-text extraction's field, `event.dataset`). The syslog header's
/// parts ([`HEADER_FIELDS`]) are known here already.
///
/// With it ([`crate::CompileOptions::payload_naming`]), the header gate
/// rules out a line whose header lacks a part a log source reads, and a
/// line a detection without a usable log source cannot see, when the line
/// holds none of the names its payload could give the field under (see
/// [`PayloadNames`]). Without it, every such line is decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadNaming {
    /// `(from, to)`: a field named `from` is also given as `to`.
    pub aliases: Vec<(String, String)>,
    /// Names given without their text in the line.
    pub made_up: Vec<String>,
}

impl PayloadNaming {
    /// The needles ([`PayloadNames::needle`]) one of which a line must
    /// hold (besides a `\u` or `&#` escape) for its payload to give rule
    /// field `field` a value, or `None` where no search can tell.
    ///
    /// A rule field resolves to an event field of its own name or of a
    /// name of its alias group ([`crate::field::ALIAS_GROUPS`]), or to one
    /// whose dotted name ends in one of those (`crate::field`'s unique
    /// leaf). Such a field is given by the payload under that name, or
    /// under a name the engine's aliases copy onto it (through other
    /// aliases too). The search cannot tell when one of those names is
    /// made up, or is a header part the header may give: every part but
    /// `missing_header_part`, the one asked about because the header
    /// lacks it.
    pub fn needles(&self, field: &str, missing_header_part: Option<usize>) -> Option<Vec<Vec<u8>>> {
        let mut targets: Vec<&str> = vec![field];
        targets.extend(
            aliases_of(field)
                .iter()
                .copied()
                .filter(|name| *name != field),
        );
        let resolves = |name: &str| {
            targets.iter().any(|target| {
                name == *target
                    || name
                        .strip_suffix(target)
                        .is_some_and(|head| head.ends_with('.'))
            })
        };
        // Names given without their text: made up, or a header part.
        let blind = || {
            self.made_up.iter().map(String::as_str).chain(
                HEADER_FIELDS
                    .iter()
                    .enumerate()
                    .filter(|(at, _)| Some(*at) != missing_header_part)
                    .map(|(_, part)| *part),
            )
        };
        if blind().any(resolves) {
            return None;
        }
        let mut sources: Vec<&str> = self
            .aliases
            .iter()
            .filter(|(_, to)| resolves(to))
            .map(|(from, _)| from.as_str())
            .collect();
        let mut at = 0;
        while at < sources.len() {
            let onto = sources[at];
            for (from, to) in &self.aliases {
                if to == onto && !sources.contains(&from.as_str()) {
                    sources.push(from);
                }
            }
            at += 1;
        }
        if blind().any(|name| sources.contains(&name)) {
            return None;
        }
        let mut needles = targets
            .iter()
            .chain(&sources)
            .map(|name| PayloadNames::needle(name))
            .collect::<Option<Vec<_>>>()?;
        needles.sort_unstable();
        needles.dedup();
        Some(needles)
    }
}

/// Bytes a decoder's escape can produce from other text (`\|`, `\=`,
/// `\"`, `\]`, `\/`, `\n`, `&lt;` and the like): a name component with
/// one of them might not be in the line as written, so it is not searched.
const ESCAPE_OUTPUTS: &[u8] = b"|\\=\"]/<>&'\n\r\t\x08\x0c";

/// Per header field: a search for the text one of whose needles a line
/// must hold for its payload to give that field, built from
/// [`PayloadNaming`].
///
/// Every decoder takes a field's name from the line's text: a JSON key
/// or path of keys, an XML element, attribute or `Name` path, a key of a
/// key=value, CEF or LEEF extension, a CEF label's value, an RFC 5424
/// parameter (`sd.<id>.<param>`: all but the leading `sd`). Each
/// component of a dotted name (an XML namespace prefix dropped, an array
/// index aside) is then in the line as written, unless an escape made it:
/// JSON's `\u`, XML's `&#`, which can make any letter, are needles too;
/// every other escape makes only [`ESCAPE_OUTPUTS`], and a component with
/// none of those bytes is searched. The needle of a name is its longest
/// such component that is not all digits, searched ASCII
/// case-insensitively (in the folded line, by the prefilter's search). A
/// name with none leaves the field unsearchable.
#[derive(Clone, Debug, Default)]
pub(crate) struct PayloadNames([Option<AnyNeedle>; 4]);

impl PayloadNames {
    pub(crate) fn build(naming: Option<&PayloadNaming>) -> PayloadNames {
        PayloadNames(std::array::from_fn(|at| {
            let needles = naming?.needles(HEADER_FIELDS[at], Some(at))?;
            search_for(&needles)
        }))
    }

    /// The component of `name` searched for it (see the type's docs).
    pub(crate) fn needle(name: &str) -> Option<Vec<u8>> {
        let body = name.strip_prefix("sd.").unwrap_or(name);
        body.split('.')
            .filter(|part| {
                !part.is_empty()
                    && !part.bytes().all(|b| b.is_ascii_digit())
                    && !part.bytes().any(|b| ESCAPE_OUTPUTS.contains(&b))
            })
            .max_by_key(|part| part.len())
            .map(|part| part.as_bytes().to_ascii_lowercase())
    }

    /// Whether the payload of `line` could give header field `at`
    /// (`folded`: the line, folded once `line_folded` is set).
    #[inline]
    fn may_give(
        &self,
        at: usize,
        line: &[u8],
        folded: &mut Vec<u8>,
        line_folded: &mut bool,
    ) -> bool {
        self.0[at].as_ref().is_none_or(|search| {
            fold_line(line, folded, line_folded);
            search.occurs_in(folded)
        })
    }
}

/// The search for `needles` and the escapes that could spell any of them
/// (`None`: unbuildable, past the searcher's limits).
fn search_for(needles: &[Vec<u8>]) -> Option<AnyNeedle> {
    let mut all: Vec<&[u8]> = vec![b"\\u", b"&#"];
    all.extend(needles.iter().map(Vec::as_slice));
    all.sort_unstable();
    all.dedup();
    AnyNeedle::build(&all)
}

/// Whether `value` is `lower` (already ASCII-lowercase) in any ASCII case,
/// byte by byte up to the first difference: the gate asks this of every
/// line's program name against each allowed one, and most differ in their
/// first byte (`eq_ignore_ascii_case` folded both sides, ~50 instructions
/// of an sshd line with the built-in pack's three names; `folded_eq`'s
/// word compare costs a cron line more than it saves an sshd one).
#[inline]
fn eq_lowercase(value: &[u8], lower: &[u8]) -> bool {
    debug_assert!(!lower.iter().any(u8::is_ascii_uppercase));
    value.len() == lower.len()
        && value
            .iter()
            .zip(lower)
            .all(|(&a, &b)| a.to_ascii_lowercase() == b)
}

/// `line` folded into `folded`, unless `done` says it is there already.
#[inline]
fn fold_line(line: &[u8], folded: &mut Vec<u8>, done: &mut bool) {
    if !*done {
        fold_into(line, folded);
        *done = true;
    }
}

/// `text` ASCII-lowercased into `folded` (cleared first).
fn fold_into(text: &[u8], folded: &mut Vec<u8>) {
    folded.clear();
    // A copy and an in-place pass, which the compiler vectorizes (a
    // mapped `extend` it did not: ~5 instructions per byte).
    folded.extend_from_slice(text);
    folded.make_ascii_lowercase();
}

/// What a rule set's log source filters decide from a line's syslog header
/// alone: whether any detection could match an event with that header,
/// whatever its payload holds.
///
/// A header field comes first in an event's fields (the payload's are
/// pushed after it) and a name resolves to its first exact field, so a
/// filter term on one of [`HEADER_FIELDS`] reads the header's value when
/// the header has that part. An alternative of a filter (an AND of terms)
/// is ruled out by the header when one of its terms names a header field
/// the header has with a value the term does not allow, or a header field
/// the header lacks whose name (or a name aliased onto it) is nowhere in
/// the line ([`PayloadNames`]), so that the payload cannot give it either.
///
/// A detection whose filter admits every event, or has an alternative
/// with no header term, is gated by its message instead when all it
/// requires is a keyword literal (SigmaHQ's `product: linux` keyword
/// rules): the message is the header parse's, the same bytes keyword
/// selections search, so a line whose message holds none of those
/// literals (ASCII case-insensitively, anywhere) cannot match it.
/// Otherwise it is gated by the payload fields it cannot match without
/// (`Detection::required_fields`): for one of its alternatives, the line
/// must hold a name the payload could give each such field under
/// ([`PayloadNaming::needles`]; fields whose names are shorter than
/// three bytes, or cannot be searched, are left out). A detection with an
/// alternative none of whose fields can be searched could match any line:
/// then there is no gate ([`HeaderGate::build`] names that detection)
/// and every line's payload is decoded.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeaderGate {
    /// Per alternative of every header-gated filter: its header terms.
    alternatives: Vec<Vec<HeaderTerm>>,
    /// The keyword literals of the message-gated detections, searched
    /// in the folded message (`None`: no such detection).
    message: Option<AnyNeedle>,
    /// For a header part the header lacks: whether the payload could
    /// give it.
    payload: PayloadNames,
    /// Per alternative of every name-gated detection: the searches (into
    /// `name_searches`) that must all find a needle in the folded line,
    /// the most selective first.
    named: Vec<Vec<u8>>,
    /// The distinct searches `named` uses (at most 64).
    name_searches: Vec<AnyNeedle>,
}

/// A filter term on a header part: (index into [`HEADER_FIELDS`], the
/// allowed values lowercased).
type HeaderTerm = (usize, Vec<Box<[u8]>>);

/// The shortest needle a name-gated detection's field is searched by:
/// shorter ones occur in nearly every line.
const NAME_NEEDLE_BYTES_MIN: usize = 3;

/// The most distinct name searches a gate holds (one bit each per line).
const NAME_SEARCHES_MAX: usize = 64;

impl HeaderGate {
    /// The gate of `filters`, `required` and `fields` (one of each per
    /// detection: its log source filter, the literals one of which it
    /// needs, from `Detection::required_literals`, and the payload fields
    /// it needs, from `Detection::required_fields`), with `naming` to
    /// search for a field's names (`None`: no search), or the index of the
    /// first detection that could match a line whatever its header,
    /// message and text.
    pub(crate) fn build(
        filters: &[&LogsourceFilter],
        required: &[Option<Vec<RequiredLiteral>>],
        fields: &[Option<Vec<Vec<&FieldName>>>],
        naming: Option<&PayloadNaming>,
    ) -> Result<HeaderGate, usize> {
        debug_assert_eq!(filters.len(), required.len());
        debug_assert_eq!(filters.len(), fields.len());
        let mut alternatives: Vec<Vec<HeaderTerm>> = Vec::new();
        let mut keywords: Vec<&[u8]> = Vec::new();
        let mut named: Vec<Vec<u8>> = Vec::new();
        let mut name_needles: Vec<Vec<Vec<u8>>> = Vec::new();
        for (index, filter) in filters.iter().enumerate() {
            if let Some(terms) = Self::header_terms(filter) {
                for terms in terms {
                    if !alternatives.contains(&terms) {
                        alternatives.push(terms);
                    }
                }
                continue;
            }
            // Only keyword literals (the empty field name: the message)
            // can be checked before the payload's decode, or the names
            // of the fields the detection needs.
            let literals = required.get(index).and_then(Option::as_ref);
            if let Some(literals) = literals.filter(|literals| {
                !literals.is_empty() && literals.iter().all(|(field, _, _)| field.is_empty())
            }) {
                keywords.extend(literals.iter().map(|(_, needle, _)| needle.as_ref()));
                continue;
            }
            let (Some(naming), Some(Some(needs))) = (naming, fields.get(index)) else {
                return Err(index);
            };
            for all in needs {
                let mut sets: Vec<Vec<Vec<u8>>> = all
                    .iter()
                    .filter_map(|field| naming.needles(field.as_str(), None))
                    .filter(|needles| needles.iter().all(|n| n.len() >= NAME_NEEDLE_BYTES_MIN))
                    .collect();
                if sets.is_empty() {
                    return Err(index);
                }
                // The most selective first: the longest shortest needle,
                // then the fewest needles.
                sets.sort_by_key(|needles| {
                    let shortest = needles.iter().map(Vec::len).min().unwrap_or(0);
                    (std::cmp::Reverse(shortest), needles.len())
                });
                let mut searches = Vec::with_capacity(sets.len());
                for needles in sets {
                    let at = match name_needles.iter().position(|known| *known == needles) {
                        Some(at) => at,
                        None => {
                            name_needles.push(needles);
                            name_needles.len() - 1
                        }
                    };
                    if at >= NAME_SEARCHES_MAX {
                        return Err(index);
                    }
                    // Lossless: below NAME_SEARCHES_MAX.
                    searches.push(at as u8);
                }
                if !named.contains(&searches) {
                    named.push(searches);
                }
            }
        }
        let name_searches = name_needles
            .iter()
            .map(|needles| search_for(needles))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Self::first_ungated(filters))?;
        keywords.sort_unstable();
        keywords.dedup();
        let message = if keywords.is_empty() {
            None
        } else {
            // Building fails only past the searcher's size limits; then
            // the first detection without header terms keeps every line
            // decoded.
            let search = AnyNeedle::build(&keywords).ok_or_else(|| Self::first_ungated(filters))?;
            Some(search)
        };
        Ok(HeaderGate {
            alternatives,
            message,
            payload: PayloadNames::build(naming),
            named,
            name_searches,
        })
    }

    /// Per alternative of `filter`: its terms on header fields; `None`
    /// when the filter admits every event or an alternative has none.
    fn header_terms(filter: &LogsourceFilter) -> Option<Vec<Vec<HeaderTerm>>> {
        if filter.alternatives.is_empty() {
            return None;
        }
        filter
            .alternatives
            .iter()
            .map(|all| {
                let terms: Vec<HeaderTerm> = all
                    .iter()
                    .filter_map(|(field, values)| {
                        HEADER_FIELDS
                            .iter()
                            .position(|name| *name == field.as_str())
                            .map(|at| (at, values.clone()))
                    })
                    .collect();
                (!terms.is_empty()).then_some(terms)
            })
            .collect()
    }

    /// The first detection whose filter gives no header terms (the one
    /// named when a search cannot be built).
    fn first_ungated(filters: &[&LogsourceFilter]) -> usize {
        filters
            .iter()
            .position(|filter| Self::header_terms(filter).is_none())
            .unwrap_or(0)
    }

    /// Whether some detection could match an event whose header parts
    /// (in [`HEADER_FIELDS`] order, `None` where the header has none) are
    /// `header`, whose message is `message` and whose whole line is
    /// `line`. False only when every alternative of every header-gated
    /// filter is ruled out by a header part the header has, or by one it
    /// lacks and the line's payload cannot give, every name-gated
    /// detection by a field whose names the line lacks, and the message
    /// holds no keyword literal of a message-gated detection. `folded` is
    /// scratch space.
    pub(crate) fn may_admit(
        &self,
        header: &[Option<&[u8]>; 4],
        message: &[u8],
        line: &[u8],
        folded: &mut Vec<u8>,
    ) -> bool {
        let mut line_folded = false;
        // Per header part the header lacks: the payload search's answer,
        // once asked.
        let mut may_give: [Option<bool>; 4] = [None; 4];
        self.alternatives.iter().any(|terms| {
            terms.iter().all(|(at, values)| match header[*at] {
                Some(value) => values.iter().any(|allowed| eq_lowercase(value, allowed)),
                None => *may_give[*at].get_or_insert_with(|| {
                    self.payload.may_give(*at, line, folded, &mut line_folded)
                }),
            })
        }) || (!self.named.is_empty() && {
            // Per search: asked (bit set in `asked`), found (in `found`).
            let (mut asked, mut found) = (0u64, 0u64);
            self.named.iter().any(|searches| {
                searches.iter().all(|&at| {
                    let bit = 1u64 << at;
                    if asked & bit == 0 {
                        asked |= bit;
                        fold_line(line, folded, &mut line_folded);
                        if self.name_searches[usize::from(at)].occurs_in(folded) {
                            found |= bit;
                        }
                    }
                    found & bit != 0
                })
            })
        }) || self.message.as_ref().is_some_and(|keywords| {
            // Keyword literals are ASCII-lowercased, as is what they are
            // searched in (Sigma's case-insensitive match). The line's
            // fold is not needed past here.
            fold_into(message, folded);
            keywords.occurs_in(folded)
        })
    }
}

/// Every distinct log source filter of a rule set, compiled together so
/// that one pass per event decides them all: each distinct
/// "field is one of these values" term is a bit, each field the filters
/// read is looked up once, its value (ASCII-folded) found in a sorted
/// table of the values any term allows, giving the terms it satisfies;
/// a filter admits the event when one of its alternatives has all its
/// terms' bits. Same answers as [`LogsourceFilter::matches`] on every
/// filter (tested).
#[derive(Clone, Debug, Default)]
pub(crate) struct LogsourceClassifier {
    /// Per distinct field the filters read: its allowed values.
    fields: Vec<ClassifiedField>,
    /// Every filter's alternatives as `(term mask, filter)`, flat.
    alternatives: Vec<(u128, u32)>,
    /// Filters with no alternatives (they admit every event).
    open: u128,
    filter_count: usize,
}

#[derive(Clone, Debug)]
struct ClassifiedField {
    field: FieldName,
    /// Allowed values (lowercased) and the terms each satisfies.
    values: Vec<(Box<[u8]>, u128)>,
    /// Open-addressing table (a power of two, at most half full) of
    /// `(name_hash(value), index into values)`; `u32::MAX` marks a free slot.
    by_hash: Vec<(u64, u32)>,
    longest: usize,
}

impl LogsourceClassifier {
    /// The most distinct terms the classifier can hold.
    const TERMS_MAX: usize = 128;
    /// The most filters the classifier can decide.
    const FILTERS_MAX: usize = 128;
    /// The longest allowed value the classifier takes (hashed and compared
    /// folded in place, so only a sanity bound: Windows channel names
    /// reach 72 bytes).
    const VALUE_MAX: usize = 256;

    /// Compiles `filters` (interned already), or `None` when they hold
    /// more distinct terms than fit (callers then run each filter).
    pub(crate) fn build(filters: &[&LogsourceFilter]) -> Option<Self> {
        if filters.len() > Self::FILTERS_MAX {
            return None;
        }
        let mut terms: Vec<(&FieldName, &[Box<[u8]>])> = Vec::new();
        let mut alternatives = Vec::new();
        let mut open = 0u128;
        for (at_filter, filter) in filters.iter().enumerate() {
            if filter.alternatives.is_empty() {
                open |= 1u128 << at_filter;
            }
            for all in &filter.alternatives {
                let mut mask = 0u128;
                for (field, values) in all {
                    let at = match terms
                        .iter()
                        .position(|(f, v)| *f == field && *v == values.as_slice())
                    {
                        Some(at) => at,
                        None => {
                            terms.push((field, values));
                            terms.len() - 1
                        }
                    };
                    if at >= Self::TERMS_MAX || values.iter().any(|v| v.len() > Self::VALUE_MAX) {
                        return None;
                    }
                    mask |= 1u128 << at;
                }
                // Lossless: at most FILTERS_MAX filters.
                alternatives.push((mask, at_filter as u32));
            }
        }
        let mut fields: Vec<ClassifiedField> = Vec::new();
        for (bit, (field, values)) in terms.iter().enumerate() {
            let at = match fields.iter().position(|f| f.field == **field) {
                Some(at) => at,
                None => {
                    fields.push(ClassifiedField {
                        field: (*field).clone(),
                        values: Vec::new(),
                        by_hash: Vec::new(),
                        longest: 0,
                    });
                    fields.len() - 1
                }
            };
            let entry = &mut fields[at];
            for value in values.iter() {
                match entry.values.iter_mut().find(|(v, _)| v == value) {
                    Some((_, mask)) => *mask |= 1u128 << bit,
                    None => entry.values.push((value.clone(), 1u128 << bit)),
                }
                entry.longest = entry.longest.max(value.len());
            }
        }
        for field in &mut fields {
            let slots = (field.values.len() * 2).next_power_of_two().max(8);
            field.by_hash = vec![(0, u32::MAX); slots];
            for (at, (value, _)) in field.values.iter().enumerate() {
                let hash = name_hash(value);
                // Truncation intended: the low bits pick the slot.
                let mut slot = hash as usize & (slots - 1);
                while field.by_hash[slot].1 != u32::MAX {
                    slot = (slot + 1) & (slots - 1);
                }
                // Lossless: a rule set's values number far below u32::MAX.
                field.by_hash[slot] = (hash, at as u32);
            }
        }
        Some(LogsourceClassifier {
            fields,
            alternatives,
            open,
            filter_count: filters.len(),
        })
    }

    /// The filters (bit `i`: filter `i` of `build`'s input) that admit
    /// `event` (`scratch` as for `Detection::matches`).
    pub(crate) fn admitted(&self, event: &Event<'_>, scratch: &Scratch) -> u128 {
        let terms = self.terms(event, scratch);
        let mut admitted = self.open;
        for &(all, filter) in &self.alternatives {
            if all & terms == all {
                admitted |= 1u128 << filter;
            }
        }
        debug_assert!(self.filter_count >= 128 || admitted >> self.filter_count == 0);
        admitted
    }

    /// The terms `event` satisfies.
    fn terms(&self, event: &Event<'_>, scratch: &Scratch) -> u128 {
        let mut terms = 0u128;
        for field in &self.fields {
            let Some(value) = scratch.field(&field.field, event) else {
                continue;
            };
            if value.len() > field.longest {
                continue;
            }
            // Hashed and compared as if lowercased, without a copy.
            let hash = folded_hash(value);
            let mask = field.by_hash.len() - 1;
            // Truncation intended: the low bits pick the slot.
            let mut slot = hash as usize & mask;
            loop {
                let (known_hash, at) = field.by_hash[slot];
                if at == u32::MAX {
                    break;
                }
                if known_hash == hash {
                    let (known, satisfied) = &field.values[at as usize];
                    if folded_eq(known, value) {
                        terms |= satisfied;
                        break;
                    }
                }
                slot = (slot + 1) & mask;
            }
        }
        terms
    }
}

fn same(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

/// The filter of a rule with this product, category and service, from the
/// configured mappings first, then the built-in table.
pub(crate) fn resolve_logsource(
    product: Option<&str>,
    category: Option<&str>,
    service: Option<&str>,
    extra: &[LogsourceMapping],
) -> Result<LogsourceFilter, RuleErrorKind> {
    if product.is_none() && category.is_none() && service.is_none() {
        return Ok(LogsourceFilter::default());
    }
    let wanted = |p: Option<&str>, c: Option<&str>, s: Option<&str>| {
        same(p, product) && same(c, category) && same(s, service)
    };
    if let Some(mapping) = extra.iter().find(|m| {
        wanted(
            m.product.as_deref(),
            m.category.as_deref(),
            m.service.as_deref(),
        )
    }) {
        return Ok(LogsourceFilter::compile(mapping.conditions.iter().map(
            |all| {
                all.iter().map(|(field, values)| {
                    (field.as_str(), values.iter().map(String::as_str).collect())
                })
            },
        )));
    }
    if let Some((_, _, _, conditions)) = BUILTIN_LOGSOURCES
        .iter()
        .find(|(p, c, s, _)| wanted(*p, *c, *s))
    {
        return Ok(LogsourceFilter::compile(conditions.iter().map(|all| {
            all.iter().map(|(field, values)| (*field, values.to_vec()))
        })));
    }
    if let Some((_, _, _, dataset)) = DATASET_LOGSOURCES
        .iter()
        .find(|(p, c, s, _)| wanted(*p, *c, *s))
    {
        return Ok(LogsourceFilter::compile(std::iter::once(
            [("event.dataset", vec![*dataset])].into_iter(),
        )));
    }
    let find = |table: &'static [(&str, &'static [&'static str])], wanted: Option<&str>| {
        wanted.and_then(|wanted| {
            table
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(wanted))
                .map(|(_, values)| values.to_vec())
        })
    };
    let sysmon_table = if same(product, Some("windows")) {
        Some((SYSMON_CATEGORIES, SYSMON))
    } else if same(product, Some("linux")) {
        Some((LINUX_SYSMON_CATEGORIES, LINUX_SYSMON))
    } else {
        None
    };
    if let Some((table, channel)) = sysmon_table.filter(|_| service.is_none()) {
        if let Some(ids) = find(table, category) {
            return Ok(LogsourceFilter::compile(std::iter::once(
                [("Channel", vec![channel]), ("EventID", ids)].into_iter(),
            )));
        }
    }
    if same(product, Some("windows")) && category.is_none() {
        if let Some(channels) = find(WINDOWS_SERVICES, service) {
            return Ok(LogsourceFilter::compile(std::iter::once(
                [("Channel", channels)].into_iter(),
            )));
        }
    }
    Err(RuleErrorKind::unsupported(format!(
        "logsource product={} category={} service={}",
        product.unwrap_or("-"),
        category.unwrap_or("-"),
        service.unwrap_or("-")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text searched for a name: its longest component that an
    /// escape cannot have made and that is not an array index; not the
    /// `sd` an RFC 5424 parameter's name starts with.
    #[test]
    fn a_payload_name_is_searched_by_its_longest_plain_component() {
        let needle = |name: &str| PayloadNames::needle(name).map(|n| String::from_utf8(n).unwrap());
        assert_eq!(needle("process.name").as_deref(), Some("process"));
        assert_eq!(needle("sproc").as_deref(), Some("sproc"));
        assert_eq!(
            needle("Event.EventData.Image").as_deref(),
            Some("eventdata")
        );
        assert_eq!(needle("sd.meta.prog").as_deref(), Some("prog"));
        assert_eq!(
            needle("sd.origin@32473.ip").as_deref(),
            Some("origin@32473")
        );
        assert_eq!(needle("sd.x.y").as_deref(), Some("y"));
        assert_eq!(needle("items.12345678.id").as_deref(), Some("items"));
        assert_eq!(needle("a|b.c\\d.ef").as_deref(), Some("ef"));
        assert_eq!(needle("a=b.0"), None);
        assert_eq!(needle(""), None);
    }

    /// A line whose header lacks a part a filter reads is ruled out only
    /// when its text holds none of the names its payload could give that
    /// part under, nor a `\u` or `&#` escape that could spell one.
    #[test]
    fn a_missing_header_part_is_looked_for_in_the_line() {
        let filter =
            LogsourceFilter::compile([[("process.name", vec!["sshd"])].into_iter()].into_iter());
        let naming = PayloadNaming {
            aliases: vec![("sproc".into(), "process.name".into())],
            made_up: vec!["user.name".into()],
        };
        let gate = HeaderGate::build(&[&filter], &[None], &[None], Some(&naming)).unwrap();
        let unsearchable = HeaderGate::build(&[&filter], &[None], &[None], None).unwrap();
        let mut folded = Vec::new();
        let no_app = [Some(&b"h"[..]), None, None, None];
        for (line, admitted) in [
            (&br#"devname="fw" user="root" action="accept""#[..], false),
            (b"CEF:0|V|P|1|2|n|3|suser=root", false),
            (br#"{"Process":{"name":"x"}}"#, true),
            (b"CEF:0|V|P|1|2|n|3|SPROC=sshd", true),
            (br#"{"\u0070rocess.name":"sshd"}"#, true),
            (
                b"<Event><Data Name='pr&#111;cess.name'>sshd</Data></Event>",
                true,
            ),
        ] {
            assert_eq!(
                gate.may_admit(&no_app, line, line, &mut folded),
                admitted,
                "{}",
                String::from_utf8_lossy(line)
            );
            assert!(unsearchable.may_admit(&no_app, line, line, &mut folded));
        }
        // A header with the part decides alone.
        let sshd = [Some(&b"h"[..]), Some(&b"sshd"[..]), None, None];
        let cron = [Some(&b"h"[..]), Some(&b"cron"[..]), None, None];
        assert!(gate.may_admit(&sshd, b"x", b"x", &mut folded));
        assert!(!gate.may_admit(&cron, b"sproc=sshd", b"sproc=sshd", &mut folded));
    }

    #[test]
    fn unmapped_log_sources_are_refused_not_opened() {
        assert!(resolve_logsource(Some("macos"), Some("process_creation"), None, &[]).is_err());
        assert!(resolve_logsource(Some("linux"), Some("image_load"), None, &[]).is_err());
        assert!(resolve_logsource(Some("windows"), None, Some("no-such-log"), &[]).is_err());
        assert!(resolve_logsource(Some("azure"), None, Some("auditlogs"), &[]).is_err());
        assert!(resolve_logsource(Some("linux"), None, None, &[]).is_ok_and(|f| f.is_open()));
        assert!(resolve_logsource(None, None, None, &[]).is_ok_and(|f| f.is_open()));
        let extra = LogsourceMapping {
            product: Some("aws".to_owned()),
            category: None,
            service: Some("cloudtrail".to_owned()),
            conditions: vec![vec![(
                "event.provider".to_owned(),
                vec!["cloudtrail".to_owned()],
            )]],
        };
        assert!(
            resolve_logsource(Some("AWS"), None, Some("cloudtrail"), &[extra])
                .is_ok_and(|f| !f.is_open())
        );
    }

    /// The header gate agrees with the filters it was built from: whenever
    /// it says no filter could admit a header, no filter admits an event
    /// with that header and any payload fields after it (payload fields
    /// that name header fields, or their aliases, included). And it stays
    /// out of the way of a filter the header cannot decide.
    #[test]
    fn the_header_gate_rules_out_only_what_no_filter_admits() {
        let linux = |service: &str| {
            resolve_logsource(Some("linux"), None, Some(service), &[]).expect("mapped")
        };
        let pinned = LogsourceMapping {
            product: Some("custom".to_owned()),
            category: None,
            service: None,
            conditions: vec![vec![
                ("process.name".to_owned(), vec!["sshd".to_owned()]),
                ("host.name".to_owned(), vec!["bastion".to_owned()]),
            ]],
        };
        let mut filters = vec![
            linux("sshd"),
            linux("sudo"),
            linux("cron"),
            resolve_logsource(Some("custom"), None, None, &[pinned]).expect("mapped"),
        ];
        let mut table = FieldTableBuilder::default();
        for filter in &mut filters {
            filter.intern_fields(&mut table);
        }
        let table = table.finish();
        let refs: Vec<&LogsourceFilter> = filters.iter().collect();
        let Ok(gate) = HeaderGate::build(
            &refs,
            &vec![None; refs.len()],
            &vec![None; refs.len()],
            None,
        ) else {
            panic!("every filter names process.name")
        };
        let headers: &[[Option<&[u8]>; 4]] = &[
            [Some(b"web-1"), Some(b"sshd"), Some(b"12"), None],
            [Some(b"web-1"), Some(b"SUDO"), None, None],
            [Some(b"web-1"), Some(b"crond"), None, None],
            [Some(b"web-1"), Some(b"nginx"), None, None],
            [Some(b"web-1"), Some(b"kernel"), None, Some(b"ID47")],
            [Some(b"bastion"), Some(b"nginx"), None, None],
            [Some(b"web-1"), None, None, None],
            [None, None, None, None],
        ];
        let payloads: &[&[(&str, &[u8])]] = &[
            &[],
            &[("process.name", b"sshd")],
            &[("host.name", b"bastion"), ("hostname", b"bastion")],
            &[("event.process.name", b"sudo"), ("msg", b"x")],
        ];
        let mut scratch = Scratch::new();
        let mut ruled_out = 0;
        for header in headers {
            let may = gate.may_admit(header, b"", b"", &mut Vec::new());
            ruled_out += usize::from(!may);
            for payload in payloads {
                let mut fields: Vec<(&str, &[u8])> = Vec::new();
                for (name, value) in HEADER_FIELDS.iter().zip(header) {
                    if let Some(value) = value {
                        fields.push((name, value));
                    }
                }
                fields.extend_from_slice(payload);
                let event = Event {
                    time_ns: 0,
                    fields: &fields,
                    message: b"",
                    raw: b"",
                };
                scratch.index_fields(&table, &event);
                let admitted = filters.iter().any(|f| f.matches(&event, &scratch));
                assert!(
                    may || !admitted,
                    "ruled out {header:?} but {payload:?} is admitted"
                );
            }
        }
        // nginx and kernel lines (and bastion's nginx) are ruled out; lines
        // without a process name are not.
        assert_eq!(ruled_out, 3);
        // A filter with no header term, or none at all, leaves no gate.
        let firewall = resolve_logsource(None, Some("firewall"), None, &[]).expect("mapped");
        assert_eq!(
            HeaderGate::build(
                &[&filters[0], &firewall],
                &[None, None],
                &[None, None],
                None
            )
            .err(),
            Some(1)
        );
        let open = resolve_logsource(Some("linux"), None, None, &[]).expect("open");
        assert_eq!(
            HeaderGate::build(&[&open, &filters[0]], &[None, None], &[None, None], None).err(),
            Some(0)
        );
        // No filters at all: no detection can match anything.
        let none = HeaderGate::build(&[], &[], &[], None).expect("a gate");
        assert!(!none.may_admit(&headers[0], b"anything", b"anything", &mut Vec::new()));
    }

    #[test]
    fn windows_services_map_to_their_channels() {
        for (service, channels) in WINDOWS_SERVICES {
            let Ok(filter) = resolve_logsource(Some("Windows"), None, Some(service), &[]) else {
                panic!("{service} is mapped")
            };
            assert!(!filter.is_open(), "{service}");
            let mut table = FieldTableBuilder::default();
            let mut filter = filter;
            filter.intern_fields(&mut table);
            let table = table.finish();
            let mut scratch = Scratch::new();
            let mut admits = |channel: &[u8]| {
                let fields: &[(&str, &[u8])] = &[("Event.System.Channel", channel)];
                let event = Event {
                    time_ns: 0,
                    fields,
                    message: b"",
                    raw: b"",
                };
                scratch.index_fields(&table, &event);
                filter.matches(&event, &scratch)
            };
            for channel in *channels {
                assert!(admits(channel.as_bytes()), "{service}: {channel}");
                assert!(
                    admits(channel.to_ascii_uppercase().as_bytes()),
                    "{service}: {channel}"
                );
            }
            assert!(!admits(b"Security"), "{service} is not Security");
            assert!(!admits(SYSMON.as_bytes()), "{service} is not Sysmon");
        }
        // A service with a category, or a category of another product, is
        // not one of these.
        assert!(resolve_logsource(Some("windows"), Some("x"), Some("windefend"), &[]).is_err());
        assert!(resolve_logsource(Some("linux"), None, Some("windefend"), &[]).is_err());
    }

    /// Every built-in filter plus configured ones with shared and
    /// overlapping terms, classified together, agree with running each
    /// filter on events of every source, in any case.
    #[test]
    fn the_classifier_agrees_with_every_filter() {
        let mut filters: Vec<LogsourceFilter> = BUILTIN_LOGSOURCES
            .iter()
            .map(|(p, c, s, _)| resolve_logsource(*p, *c, *s, &[]).unwrap_or_default())
            .collect();
        for (category, _) in SYSMON_CATEGORIES {
            filters.extend(resolve_logsource(
                Some("windows"),
                Some(category),
                None,
                &[],
            ));
        }
        for (category, _) in LINUX_SYSMON_CATEGORIES {
            filters.extend(resolve_logsource(Some("linux"), Some(category), None, &[]));
        }
        for (p, c, s, _) in DATASET_LOGSOURCES {
            filters.extend(resolve_logsource(*p, *c, *s, &[]));
        }
        for (service, _) in WINDOWS_SERVICES {
            filters.extend(resolve_logsource(Some("windows"), None, Some(service), &[]));
        }
        let extra = LogsourceMapping {
            product: Some("custom".to_owned()),
            category: None,
            service: None,
            conditions: vec![
                vec![
                    ("process.name".to_owned(), vec!["sshd".to_owned()]),
                    ("host.name".to_owned(), vec!["bastion".to_owned()]),
                ],
                vec![("Channel".to_owned(), vec![])],
            ],
        };
        filters.extend(resolve_logsource(Some("custom"), None, None, &[extra]));
        let mut table = FieldTableBuilder::default();
        for filter in &mut filters {
            filter.intern_fields(&mut table);
        }
        let table = table.finish();
        let refs: Vec<&LogsourceFilter> = filters.iter().collect();
        let Some(classifier) = LogsourceClassifier::build(&refs) else {
            panic!("the built-in table fits the classifier")
        };
        let events: &[&[(&str, &[u8])]] = &[
            &[("process.name", b"sshd")],
            &[("process.name", b"SSHD"), ("host.name", b"Bastion")],
            &[("process.name", b"crond")],
            &[("process.name", b"auditd")],
            &[("Channel", b"security"), ("EventID", b"4688")],
            &[
                ("Event.System.Channel", SYSMON.as_bytes()),
                ("Event.System.EventID", b"1"),
            ],
            &[("Channel", SYSMON.as_bytes()), ("EventID", b"13")],
            &[("Channel", SYSMON.as_bytes()), ("EventID", b"26")],
            &[
                ("Channel", b"Microsoft-Windows-PowerShell/Operational"),
                ("EventID", b"4104"),
            ],
            &[("Channel", b"Windows PowerShell"), ("EventID", b"400")],
            &[("Channel", b"Windows PowerShell"), ("EventID", b"600")],
            &[
                ("Channel", b"PowerShellCore/Operational"),
                ("EventID", b"4103"),
            ],
            &[("Channel", LINUX_SYSMON.as_bytes()), ("EventID", b"1")],
            &[("Channel", LINUX_SYSMON.as_bytes()), ("EventID", b"11")],
            &[("Channel", b"Microsoft-Windows-Windows Defender/Operational")],
            &[("Channel", b"Microsoft-Windows-AppLocker/EXE and DLL")],
            &[("process.name", b"vsftpd")],
            &[("event.dataset", b"aws.cloudtrail")],
            &[("event.dataset", b"OKTA.system")],
            &[("process.name", b"httpd")],
            &[("event.category", b"web")],
            &[("event.category", b"Firewall")],
            &[("Channel", b"System")],
            &[],
        ];
        let mut scratch = Scratch::new();
        for fields in events {
            let event = Event {
                time_ns: 0,
                fields,
                message: b"",
                raw: b"",
            };
            scratch.index_fields(&table, &event);
            let admitted = classifier.admitted(&event, &scratch);
            for (at, filter) in filters.iter().enumerate() {
                let want = filter.matches(&event, &scratch);
                assert_eq!(admitted >> at & 1 == 1, want, "filter {at} on {fields:?}");
            }
            assert!(admitted != 0, "open filters admit {fields:?}");
        }
    }

    #[test]
    fn process_creation_is_sysmon_1_or_security_4688() {
        let filter = resolve_logsource(Some("windows"), Some("process_creation"), None, &[]);
        let Ok(filter) = filter else {
            panic!("process_creation is mapped")
        };
        let check = |fields: &[(&str, &[u8])]| {
            filter.matches(
                &Event {
                    time_ns: 0,
                    fields,
                    message: b"",
                    raw: b"",
                },
                &Scratch::new(),
            )
        };
        assert!(check(&[
            ("Event.System.Channel", SYSMON.as_bytes()),
            ("Event.System.EventID", b"1")
        ]));
        assert!(check(&[("Channel", b"security"), ("EventID", b"4688")]));
        assert!(!check(&[("Channel", b"Security"), ("EventID", b"1")]));
        assert!(!check(&[("process.name", b"sshd")]));
    }
}
