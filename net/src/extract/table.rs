//! The extraction table: one row per message shape. Order matters (first
//! match wins): specific rows before general ones. Field names follow ECS.

use super::{Kv, KvStyle, Row};

const SSHD: &[&str] = &["sshd", "sshd-session", "sshd-auth"];
const SUDO: &[&str] = &["sudo"];
const SU: &[&str] = &["su", "su-l"];

// Cisco ASA and Firepower Threat Defense share message ids and texts; the
// severity digit is matched by `*` because administrators can change it.
const ASA_BUILT: &[&str] = &[
    "ASA-*-302013",
    "ASA-*-302015",
    "FTD-*-302013",
    "FTD-*-302015",
];
const ASA_DENY_ACL: &[&str] = &["ASA-*-106023", "FTD-*-106023"];
const ASA_DENY_NO_CONNECTION: &[&str] = &[
    "ASA-*-106001",
    "ASA-*-106015",
    "FTD-*-106001",
    "FTD-*-106015",
];
const ASA_ACL_LOG: &[&str] = &["ASA-*-106100", "FTD-*-106100"];
const ASA_LOGIN_DENIED: &[&str] = &["ASA-*-605004", "FTD-*-605004"];
const ASA_LOGIN_PERMITTED: &[&str] = &["ASA-*-605005", "FTD-*-605005"];
const ASA_AAA_REJECTED: &[&str] = &[
    "ASA-*-113005",
    "ASA-*-113015",
    "FTD-*-113005",
    "FTD-*-113015",
];
const ASA_AAA_ACCEPTED: &[&str] = &["ASA-*-113004", "FTD-*-113004"];
const ASA_COMMAND: &[&str] = &["ASA-*-111008", "FTD-*-111008"];

const LOGIN_FAILURE: &[(&str, &str)] =
    &[("event.action", "ssh_login"), ("event.outcome", "failure")];
const LOGIN_SUCCESS: &[(&str, &str)] =
    &[("event.action", "ssh_login"), ("event.outcome", "success")];

/// pam_unix auth failure keys, as the sshd-side user.
const PAM_SSH_KV: &[Kv] = &[
    Kv {
        key: b"rhost",
        field: "source.ip",
        to_end: false,
    },
    Kv {
        key: b"user",
        field: "user.name",
        to_end: false,
    },
];

/// pam_unix auth failure keys for sudo: `user` ran sudo and typed their own
/// password (`ruser` repeats it).
const PAM_SUDO_KV: &[Kv] = &[Kv {
    key: b"user",
    field: "user.name",
    to_end: false,
}];

/// pam_unix auth failure keys for su: `ruser` ran su, `user` is the target.
const PAM_SU_KV: &[Kv] = &[
    Kv {
        key: b"ruser",
        field: "user.name",
        to_end: false,
    },
    Kv {
        key: b"user",
        field: "user.target.name",
        to_end: false,
    },
];

/// sudo's `TTY=... ; PWD=... ; USER=root ; COMMAND=...` tail.
const SUDO_KV: &[Kv] = &[
    Kv {
        key: b"TTY",
        field: "process.tty.name",
        to_end: false,
    },
    Kv {
        key: b"PWD",
        field: "process.working_directory",
        to_end: false,
    },
    Kv {
        key: b"USER",
        field: "user.target.name",
        to_end: false,
    },
    Kv {
        key: b"COMMAND",
        field: "process.command_line",
        to_end: true,
    },
];

const fn row(
    name: &'static str,
    apps: &'static [&'static str],
    pattern: &'static str,
    constants: &'static [(&'static str, &'static str)],
) -> Row {
    Row {
        name,
        apps,
        pattern,
        kv_style: KvStyle::None,
        kv: &[],
        constants,
    }
}

const fn kv_row(
    name: &'static str,
    apps: &'static [&'static str],
    pattern: &'static str,
    kv_style: KvStyle,
    kv: &'static [Kv],
    constants: &'static [(&'static str, &'static str)],
) -> Row {
    Row {
        name,
        apps,
        pattern,
        kv_style,
        kv,
        constants,
    }
}

#[rustfmt::skip]
pub static ROWS: &[Row] = &[
    // ---- sshd ---------------------------------------------------------
    row("ssh_failed_password_invalid_user", SSHD,
        "Failed password for invalid user {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_failed_password", SSHD,
        "Failed password for {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "bad_password")]),
    row("ssh_failed_publickey_invalid_user", SSHD,
        "Failed publickey for invalid user {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_failed_publickey", SSHD,
        "Failed publickey for {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "bad_publickey")]),
    row("ssh_accepted_password", SSHD,
        "Accepted password for {user.name*} from {source.ip} port {source.port}", LOGIN_SUCCESS),
    row("ssh_accepted_publickey", SSHD,
        "Accepted publickey for {user.name*} from {source.ip} port {source.port}", LOGIN_SUCCESS),
    row("ssh_accepted_keyboard_interactive", SSHD,
        "Accepted keyboard-interactive/pam for {user.name*} from {source.ip} port {source.port}", LOGIN_SUCCESS),
    row("ssh_invalid_user", SSHD,
        "Invalid user {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_invalid_user", SSHD,
        "Invalid user {user.name*} from {source.ip}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_max_auth_attempts", SSHD,
        "error: maximum authentication attempts exceeded for invalid user {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "max_auth_attempts")]),
    row("ssh_max_auth_attempts", SSHD,
        "error: maximum authentication attempts exceeded for {user.name*} from {source.ip} port {source.port}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "max_auth_attempts")]),
    row("ssh_max_auth_attempts", SSHD,
        "Disconnecting authenticating user {user.name} {source.ip} port {source.port}: Too many authentication failures",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "max_auth_attempts")]),
    row("ssh_max_auth_attempts", SSHD,
        "Disconnecting invalid user {user.name} {source.ip} port {source.port}: Too many authentication failures",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "max_auth_attempts")]),
    row("ssh_pam_auth_failure", SSHD,
        "error: PAM: Authentication failure for illegal user {user.name*} from {source.ip}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_pam_auth_failure", SSHD,
        "error: PAM: Authentication failure for {user.name*} from {source.ip}",
        &[("event.action", "ssh_login"), ("event.outcome", "failure"), ("event.reason", "pam_auth_failure")]),
    row("ssh_closed_preauth", SSHD,
        "Connection closed by authenticating user {user.name} {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect"), ("event.outcome", "failure"), ("event.reason", "closed_preauth")]),
    row("ssh_closed_preauth", SSHD,
        "Connection closed by invalid user {user.name} {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_connection_closed", SSHD,
        "Connection closed by {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect")]),
    row("ssh_disconnected_preauth", SSHD,
        "Disconnected from authenticating user {user.name} {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect"), ("event.outcome", "failure"), ("event.reason", "closed_preauth")]),
    row("ssh_disconnected_preauth", SSHD,
        "Disconnected from invalid user {user.name} {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect"), ("event.outcome", "failure"), ("event.reason", "invalid_user")]),
    row("ssh_disconnected", SSHD,
        "Disconnected from user {user.name} {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect"), ("event.outcome", "success")]),
    row("ssh_disconnected", SSHD,
        "Disconnected from {source.ip} port {source.port}",
        &[("event.action", "ssh_disconnect")]),
    kv_row("ssh_pam_unix_auth_failure", SSHD,
        "pam_unix(sshd:auth): authentication failure;", KvStyle::Spaces, PAM_SSH_KV, LOGIN_FAILURE),

    // ---- sudo ---------------------------------------------------------
    // First because it is the commonest; the failure rows cannot match it
    // (their text after ` : ` is not `TTY=`).
    kv_row("sudo_command", SUDO,
        "{user.name} : TTY={process.tty.name} ;", KvStyle::Semicolons, SUDO_KV,
        &[("event.action", "sudo"), ("event.outcome", "success")]),
    kv_row("sudo_incorrect_password", SUDO,
        "{user.name} : {_} incorrect password attempt", KvStyle::Semicolons, SUDO_KV,
        &[("event.action", "sudo"), ("event.outcome", "failure"), ("event.reason", "incorrect_password")]),
    kv_row("sudo_not_in_sudoers", SUDO,
        "{user.name} : user NOT in sudoers ;", KvStyle::Semicolons, SUDO_KV,
        &[("event.action", "sudo"), ("event.outcome", "failure"), ("event.reason", "not_in_sudoers")]),
    kv_row("sudo_command_not_allowed", SUDO,
        "{user.name} : command not allowed ;", KvStyle::Semicolons, SUDO_KV,
        &[("event.action", "sudo"), ("event.outcome", "failure"), ("event.reason", "command_not_allowed")]),
    kv_row("sudo_pam_auth_failure", SUDO,
        "pam_unix(sudo:auth): authentication failure;", KvStyle::Spaces, PAM_SUDO_KV,
        &[("event.action", "sudo"), ("event.outcome", "failure"), ("event.reason", "pam_auth_failure")]),
    row("session_open", SUDO,
        "pam_unix(sudo:session): session opened for user {user.target.name}(uid={_}) by {user.name}(",
        &[("event.action", "session_open")]),
    row("session_open", SUDO,
        "pam_unix(sudo:session): session opened for user {user.target.name} by {user.name}(",
        &[("event.action", "session_open")]),

    // ---- su -----------------------------------------------------------
    row("su_failed", SU,
        "FAILED su for {user.target.name} by {user.name}",
        &[("event.action", "su"), ("event.outcome", "failure")]),
    row("su_failed", SU,
        "FAILED SU (to {user.target.name}) {user.name} on {process.tty.name}",
        &[("event.action", "su"), ("event.outcome", "failure")]),
    row("su_success", SU,
        "Successful su for {user.target.name} by {user.name}",
        &[("event.action", "su"), ("event.outcome", "success")]),
    row("su_success", SU,
        "(to {user.target.name}) {user.name} on {process.tty.name}",
        &[("event.action", "su"), ("event.outcome", "success")]),
    row("su_success", SU,
        "+ {process.tty.name} {user.name}:{user.target.name}",
        &[("event.action", "su"), ("event.outcome", "success")]),
    row("su_failed", SU,
        "- {process.tty.name} {user.name}:{user.target.name}",
        &[("event.action", "su"), ("event.outcome", "failure")]),
    kv_row("su_pam_auth_failure", SU,
        "pam_unix(su:auth): authentication failure;", KvStyle::Spaces, PAM_SU_KV,
        &[("event.action", "su"), ("event.outcome", "failure"), ("event.reason", "pam_auth_failure")]),
    kv_row("su_pam_auth_failure", SU,
        "pam_unix(su-l:auth): authentication failure;", KvStyle::Spaces, PAM_SU_KV,
        &[("event.action", "su"), ("event.outcome", "failure"), ("event.reason", "pam_auth_failure")]),
    row("session_open", SU,
        "pam_unix({_}:session): session opened for user {user.target.name}(uid={_}) by {user.name}(",
        &[("event.action", "session_open")]),
    row("session_open", SU,
        "pam_unix({_}:session): session opened for user {user.target.name} by {user.name}(",
        &[("event.action", "session_open")]),

    // ---- any app: pam_unix ---------------------------------------------
    kv_row("pam_auth_failure", &[],
        "pam_unix({pam.service}:auth): authentication failure;", KvStyle::Spaces, PAM_SSH_KV,
        &[("event.action", "pam_auth"), ("event.outcome", "failure")]),
    row("session_open", &[],
        "pam_unix({pam.service}:session): session opened for user {user.name}(", &[("event.action", "session_open")]),
    row("session_open", &[],
        "pam_unix({pam.service}:session): session opened for user {user.name} ", &[("event.action", "session_open")]),
    row("session_close", &[],
        "pam_unix({pam.service}:session): session closed for user {user.name}", &[("event.action", "session_close")]),

    // ---- Cisco IOS (app key is the mnemonic) ----------------------------
    row("cisco_login_failed", &["SEC_LOGIN-4-LOGIN_FAILED"],
        "Login failed [user: {user.name*}] [Source: {source.ip}] [localport: {destination.port}] [Reason: {event.reason*}]",
        &[("event.action", "device_login"), ("event.outcome", "failure")]),
    row("cisco_login_failed", &["SEC_LOGIN-4-LOGIN_FAILED"],
        "Login failed [user: {user.name*}] [Source: {source.ip}]",
        &[("event.action", "device_login"), ("event.outcome", "failure")]),
    row("cisco_login_success", &["SEC_LOGIN-5-LOGIN_SUCCESS"],
        "Login Success [user: {user.name*}] [Source: {source.ip}]",
        &[("event.action", "device_login"), ("event.outcome", "success")]),

    // ---- Cisco ASA / FTD (app key is the mnemonic) ----------------------
    // 302013/302015: an inbound connection's first address is the
    // initiator (source); an outbound one's first address is the remote
    // end (destination). `{_*}` skips the mapped address and an optional
    // identity-firewall user.
    row("asa_connection_built", ASA_BUILT,
        "Built inbound {network.transport} connection {_} for {observer.ingress.interface.name}:{source.ip}/{source.port} {_*} to {observer.egress.interface.name}:{destination.ip}/{destination.port}",
        &[("event.action", "connection_built"), ("network.direction", "inbound")]),
    row("asa_connection_built", ASA_BUILT,
        "Built outbound {network.transport} connection {_} for {observer.egress.interface.name}:{destination.ip}/{destination.port} {_*} to {observer.ingress.interface.name}:{source.ip}/{source.port}",
        &[("event.action", "connection_built"), ("network.direction", "outbound")]),
    row("asa_acl_deny", ASA_DENY_ACL,
        "Deny {network.transport} src {observer.ingress.interface.name}:{source.ip}/{source.port} dst {observer.egress.interface.name}:{destination.ip}/{destination.port} by access-group \"{rule.name}\"",
        &[("event.action", "acl_deny"), ("event.outcome", "failure")]),
    // ICMP and other port-less protocols: `(type 8, code 0)` before `by`.
    row("asa_acl_deny", ASA_DENY_ACL,
        "Deny {network.transport} src {observer.ingress.interface.name}:{source.ip} dst {observer.egress.interface.name}:{destination.ip} {_*}by access-group \"{rule.name}\"",
        &[("event.action", "acl_deny"), ("event.outcome", "failure")]),
    row("asa_deny_no_connection", ASA_DENY_NO_CONNECTION,
        "Inbound TCP connection denied from {source.ip}/{source.port} to {destination.ip}/{destination.port} flags {_*} on interface {observer.ingress.interface.name}",
        &[("event.action", "connection_denied"), ("event.outcome", "failure"), ("network.transport", "tcp")]),
    row("asa_deny_no_connection", ASA_DENY_NO_CONNECTION,
        "Deny TCP (no connection) from {source.ip}/{source.port} to {destination.ip}/{destination.port} flags {_*} on interface {observer.ingress.interface.name}",
        &[("event.action", "connection_denied"), ("event.outcome", "failure"), ("network.transport", "tcp")]),
    row("asa_acl_log", ASA_ACL_LOG,
        "access-list {rule.name} denied {network.transport} {observer.ingress.interface.name}/{source.ip}({source.port}) -> {observer.egress.interface.name}/{destination.ip}({destination.port})",
        &[("event.action", "acl_deny"), ("event.outcome", "failure")]),
    row("asa_acl_log", ASA_ACL_LOG,
        "access-list {rule.name} permitted {network.transport} {observer.ingress.interface.name}/{source.ip}({source.port}) -> {observer.egress.interface.name}/{destination.ip}({destination.port})",
        &[("event.action", "acl_permit"), ("event.outcome", "success")]),
    row("asa_login_denied", ASA_LOGIN_DENIED,
        "Login denied from {source.ip}/{source.port} to {observer.ingress.interface.name}:{destination.ip}/{network.protocol} for user \"{user.name*}\"",
        &[("event.action", "device_login"), ("event.outcome", "failure")]),
    row("asa_login_permitted", ASA_LOGIN_PERMITTED,
        "Login permitted from {source.ip}/{source.port} to {observer.ingress.interface.name}:{destination.ip}/{network.protocol} for user \"{user.name*}\"",
        &[("event.action", "device_login"), ("event.outcome", "success")]),
    row("asa_aaa_rejected", ASA_AAA_REJECTED,
        "AAA user authentication Rejected : reason = {event.reason*} : server = {_} : user = {user.name*} : user IP = {source.ip}",
        &[("event.action", "aaa_auth"), ("event.outcome", "failure")]),
    row("asa_aaa_rejected", ASA_AAA_REJECTED,
        "AAA user authentication Rejected : reason = {event.reason*} : local database : user = {user.name*} : user IP = {source.ip}",
        &[("event.action", "aaa_auth"), ("event.outcome", "failure")]),
    row("asa_aaa_accepted", ASA_AAA_ACCEPTED,
        "AAA user authentication Successful : server = {_} : user = {user.name*}",
        &[("event.action", "aaa_auth"), ("event.outcome", "success")]),
    row("asa_command", ASA_COMMAND,
        "User '{user.name*}' executed the '{process.command_line*}' command",
        &[("event.action", "device_command")]),
];
