use super::*;

fn run(app: &str, message: &str) -> (Option<&'static str>, Vec<(String, String)>) {
    let mut fields = Fields::new();
    let row = extract(app.as_bytes(), message.as_bytes(), &mut fields);
    let list = fields
        .as_slice()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    (row, list)
}

fn get<'v>(fields: &'v [(String, String)], name: &str) -> Option<&'v str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn table_is_well_formed() {
    for row in ROWS {
        let pattern = row.pattern.as_bytes();
        assert!(!row.name.is_empty());
        let mut pos = 0;
        let mut captures = 0;
        let mut previous_was_capture = false;
        while let Some((piece, next)) = next_piece(pattern, pos) {
            match piece {
                Piece::Literal(lit) => {
                    assert!(!lit.contains(&b'}'), "{}: stray brace", row.name);
                    previous_was_capture = false;
                }
                Piece::Capture { name, .. } => {
                    assert!(!previous_was_capture, "{}: adjacent captures", row.name);
                    assert!(!name.is_empty() && !name.contains('{'), "{}", row.name);
                    captures += 1;
                    previous_was_capture = true;
                }
            }
            pos = next;
        }
        assert!(captures + row.kv.len() <= ROW_FIELDS_MAX, "{}", row.name);
        assert!(pattern.first().is_some_and(|&b| b != b' '), "{}", row.name);
        assert!(
            row.apps
                .iter()
                .all(|a| !a.starts_with('*') && a.matches('*').count() <= 1),
            "{}: app entries may hold one `*`, not first",
            row.name
        );
        assert_eq!(
            row.kv_style == KvStyle::None,
            row.kv.is_empty(),
            "{}",
            row.name
        );
    }
}

#[test]
fn greedy_user_resists_injection() {
    let (row, f) = run(
        "sshd",
        "Failed password for x from 1.2.3.4 port 1 from 5.6.7.8 port 22 ssh2",
    );
    assert_eq!(row, Some("ssh_failed_password"));
    assert_eq!(get(&f, "user.name"), Some("x from 1.2.3.4 port 1"));
    assert_eq!(get(&f, "source.ip"), Some("5.6.7.8"));
    assert_eq!(get(&f, "source.port"), Some("22"));
}

#[test]
fn rows_by_app_and_order() {
    let (row, f) = run(
        "sshd",
        "Failed password for invalid user admin from ::1 port 22 ssh2",
    );
    assert_eq!(row, Some("ssh_failed_password_invalid_user"));
    assert_eq!(get(&f, "user.name"), Some("admin"));
    assert_eq!(get(&f, "source.ip"), Some("::1"));
    assert_eq!(get(&f, "event.reason"), Some("invalid_user"));
    // The same text under another app matches nothing.
    assert_eq!(
        run("cron", "Failed password for root from 1.2.3.4 port 1").0,
        None
    );
    // A bad IP fails the row rather than emitting garbage.
    assert_eq!(
        run("sshd", "Failed password for root from evil port 1").0,
        None
    );
}

#[test]
fn sudo_command_runs_to_the_end() {
    let (row, f) = run(
        "sudo",
        "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/bin/sh -c 'a ; b'",
    );
    assert_eq!(row, Some("sudo_command"));
    assert_eq!(get(&f, "user.name"), Some("alice"));
    assert_eq!(get(&f, "user.target.name"), Some("root"));
    assert_eq!(get(&f, "process.command_line"), Some("/bin/sh -c 'a ; b'"));
    assert_eq!(get(&f, "event.outcome"), Some("success"));
}

#[test]
fn pam_kv_skips_empty_and_non_ip_values() {
    let (row, f) = run(
        "sshd",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.9  user=root",
    );
    assert_eq!(row, Some("ssh_pam_unix_auth_failure"));
    assert_eq!(get(&f, "source.ip"), Some("203.0.113.9"));
    assert_eq!(get(&f, "user.name"), Some("root"));
    let (_, f) = run(
        "sshd",
        "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=host.example",
    );
    assert_eq!(get(&f, "source.ip"), None);
}

#[test]
fn no_match_leaves_fields_untouched() {
    let mut fields = Fields::new();
    fields.push("keep", b"1");
    assert_eq!(extract(b"sshd", b"Failed password for", &mut fields), None);
    assert_eq!(fields.len(), 1);
}

#[test]
fn ip_shapes() {
    assert!(looks_like_ip(b"10.0.0.1"));
    assert!(looks_like_ip(b"2001:db8::1"));
    assert!(looks_like_ip(b"::ffff:10.0.0.1"));
    assert!(!looks_like_ip(b"10.0.0"));
    assert!(!looks_like_ip(b"host"));
    assert!(!looks_like_ip(b"1:2"));
    assert!(!looks_like_ip(b"1.2.3.4."));
    assert!(!looks_like_ip(b"1.2.3.4.5"));
    assert!(!looks_like_ip(b"1234.2.3.4"));
    assert!(
        looks_like_ip(b"999.2.3.4"),
        "a shape check, not a validation"
    );
}

/// The shape `looks_like_ip` checks, written the plain way: every string
/// over an alphabet that reaches each of its branches, up to seven bytes,
/// gets the same answer from both.
#[test]
fn ip_shapes_agree_with_the_plain_definition() {
    fn plain(value: &[u8]) -> bool {
        if value.is_empty() || value.len() > 45 {
            return false;
        }
        if value.contains(&b':') {
            return value.iter().filter(|&&b| b == b':').count() >= 2
                && value
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        }
        let parts: Vec<&[u8]> = value.split(|&b| b == b'.').collect();
        parts.len() == 4
            && parts
                .iter()
                .all(|p| (1..=3).contains(&p.len()) && p.iter().all(u8::is_ascii_digit))
    }
    crate::test_texts::each_text(b"10.:fx", 7, |value| {
        assert_eq!(looks_like_ip(value), plain(value), "{value:?}");
    });
    for long in [&b"1.2.3.4"[..], b"fe80::1", b"1.1.1.1111"] {
        let mut value = long.to_vec();
        while value.len() <= 50 {
            assert_eq!(looks_like_ip(&value), plain(&value), "{value:?}");
            value.extend_from_slice(b"0:");
        }
    }
}

#[test]
fn repeated_keys_keep_the_first() {
    let mut message = String::from("pam_unix(sshd:auth): authentication failure; user=first");
    for _ in 0..100 {
        message.push_str(" user=again rhost=10.0.0.1");
    }
    let (row, f) = run("sshd", &message);
    assert_eq!(row, Some("ssh_pam_unix_auth_failure"));
    assert_eq!(get(&f, "user.name"), Some("first"));
    assert_eq!(f.len(), 4);
}

#[test]
fn a_word_and_its_delimiter_are_found_as_the_first_occurrence_without_a_space_before_it() {
    // The definition: the first occurrence anywhere, refused when the
    // value before it holds a space.
    let defined = |hay: &[u8], needle: &[u8]| {
        memmem::find(hay, needle).filter(|&at| !hay[..at].contains(&b' '))
    };
    let needles: [&[u8]; 7] = [
        b":session): session opened for user ",
        b" port ",
        b")",
        b" ",
        b"]:",
        b"::",
        b" : ",
    ];
    let hays: [&[u8]; 9] = [
        b"",
        b"sshd:session): session opened for user bob(uid=0)",
        b"sshd:session): session closed for user bob",
        b"10.0.0.1 port 22",
        b"10.0.0.1  port 22 port 23",
        b"a b) c)",
        b"x]:y]: z",
        b":::: ::",
        b"bob : TTY=pts/0 ; PWD=/ : ",
    ];
    for hay in hays {
        for needle in needles {
            let delimiter = Delimiter::new(needle, false);
            assert_eq!(
                delimiter.find_after_word(hay),
                defined(hay, needle),
                "{:?} {:?}",
                String::from_utf8_lossy(hay),
                String::from_utf8_lossy(needle)
            );
        }
    }
}

#[test]
fn literal_search_matches_memmem() {
    let hays: [&[u8]; 5] = [
        b"",
        b"a : b ; c : d",
        b" from  from x from",
        b"::::",
        b" ; ; ;",
    ];
    let needles: [&[u8]; 6] = [b" : ", b" ; ", b" from ", b":", b"::", b"x"];
    for hay in hays {
        for needle in needles {
            assert_eq!(
                find_literal(hay, needle),
                memmem::find(hay, needle),
                "{hay:?} {needle:?}"
            );
            assert_eq!(
                rfind_literal(hay, needle),
                memmem::rfind(hay, needle),
                "{hay:?} {needle:?}"
            );
        }
    }
}

#[test]
fn app_entries_with_a_star_match_one_dashless_run() {
    assert!(app_matches("ASA-*-302013", b"ASA-6-302013"));
    assert!(app_matches("ASA-*-302013", b"ASA-5-302013"));
    assert!(!app_matches("ASA-*-302013", b"ASA-6-302014"));
    assert!(!app_matches("ASA-*-302013", b"ASA-6-x-302013"));
    assert!(!app_matches("ASA-*-302013", b"ASA-302013"));
    assert!(app_matches("sshd", b"sshd"));
    assert!(!app_matches("sshd", b"sshd2"));
}

#[test]
fn asa_inbound_and_outbound_put_the_initiator_in_source() {
    let (row, f) = run(
        "ASA-6-302013",
        "Built inbound TCP connection 1 for outside:203.0.113.5/51234 (203.0.113.5/51234) to inside:10.0.0.5/443 (10.0.0.5/443)",
    );
    assert_eq!(row, Some("asa_connection_built"));
    assert_eq!(get(&f, "source.ip"), Some("203.0.113.5"));
    assert_eq!(get(&f, "destination.port"), Some("443"));
    let (_, f) = run(
        "ASA-6-302013",
        "Built outbound TCP connection 2 for outside:198.51.100.80/443 (198.51.100.80/443) to inside:10.0.0.25/60123 (198.51.100.2/60123)",
    );
    assert_eq!(get(&f, "source.ip"), Some("10.0.0.25"));
    assert_eq!(get(&f, "destination.ip"), Some("198.51.100.80"));
}

#[test]
fn short_compares_agree_with_slice_equality() {
    let text: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    for len in 0..=text.len() {
        let a = &text[..len];
        assert!(same_bytes(a, a), "{len}");
        assert!(begins_with(text, a), "{len}");
        for at in 0..len {
            let mut b = a.to_vec();
            b[at] ^= 0x20;
            assert!(!same_bytes(a, &b), "{len} {at}");
            assert!(!begins_with(text, &b), "{len} {at}");
        }
        if len > 0 {
            assert!(!same_bytes(a, &text[..len - 1]));
            assert!(!begins_with(&text[..len - 1], a));
        }
    }
}
