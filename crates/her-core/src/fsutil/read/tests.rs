use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use super::*;

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo failed");
}

#[test]
fn a_regular_file_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    std::fs::write(&path, "héllo\n").unwrap();
    assert_eq!(text(&path, Kind::Config).unwrap(), "héllo\n");
    assert_eq!(bytes(&path, Kind::Config).unwrap(), "héllo\n".as_bytes());
}

#[test]
fn a_missing_file_is_none_only_for_optional_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    assert_eq!(optional_text(&path, Kind::Config).unwrap(), None);
    let err = text(&path, Kind::Config).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

#[test]
fn folders_fifos_and_devices_are_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.json");
    mkfifo(&fifo);
    let zero = dir.path().join("zero.json");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    for (path, what) in [
        (dir.path().to_path_buf(), "a folder"),
        (fifo.clone(), "a named pipe (FIFO)"),
        (zero.clone(), "a character device"),
    ] {
        let err = bytes(&path, Kind::Card).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ReadError::NotAFile { .. }), "{text}");
        assert!(text.contains(what), "{text}");
        assert!(text.contains("not a regular file"), "{text}");
        assert!(lines(&path, Kind::Session).is_err());
        assert!(open_regular(&path).is_err());
    }
    // A symlink to a regular file is followed.
    let target = dir.path().join("real.json");
    std::fs::write(&target, "{}").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(bytes(&link, Kind::Card).unwrap(), b"{}");
}

#[test]
fn the_limit_is_checked_before_and_while_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    std::fs::write(&path, vec![b'x'; 101]).unwrap();
    let err = bytes_within(&path, Kind::Dataset, 100).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ReadError::TooLarge {
                size: Some(101),
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("limits.dataset_mb"), "{text}");
    assert_eq!(bytes_within(&path, Kind::Dataset, 101).unwrap().len(), 101);
    // /proc files report a size of 0 but hold more: the read itself stops.
    let status = Path::new("/proc/self/status");
    let err = bytes_within(status, Kind::Config, 16).unwrap_err();
    assert!(
        matches!(err, ReadError::TooLarge { size: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("more than 16 bytes"), "{err}");
}

#[test]
fn invalid_utf8_names_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, b"ab\xffcd").unwrap();
    let err = text(&path, Kind::Config).unwrap_err();
    assert!(matches!(err, ReadError::NotUtf8 { offset: 2, .. }), "{err}");
}

fn collect(reader: LineReader) -> Vec<Line> {
    reader.map(Result::unwrap).collect()
}

#[test]
fn lines_are_numbered_and_a_cut_last_line_is_marked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    std::fs::write(&path, "a\n\nb\nc").unwrap();
    let got = collect(lines(&path, Kind::Session).unwrap());
    let view: Vec<(usize, &[u8], bool)> = got
        .iter()
        .map(|l| (l.number, l.bytes(), l.terminated))
        .collect();
    assert_eq!(
        view,
        vec![
            (1, &b"a"[..], true),
            (2, &b""[..], true),
            (3, &b"b"[..], true),
            (4, &b"c"[..], false)
        ]
    );
    assert!(got[1].is_blank());
    std::fs::write(&path, "").unwrap();
    assert!(collect(lines(&path, Kind::Session).unwrap()).is_empty());
}

#[test]
fn an_over_long_line_is_reported_and_later_lines_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.jsonl");
    let long = "y".repeat(200_000);
    std::fs::write(&path, format!("short\n{long}\nafter\n")).unwrap();
    let got = collect(lines_within(&path, Kind::Dataset, 1 << 20, 1000).unwrap());
    assert_eq!(got.len(), 3);
    assert_eq!(got[1].too_long, Some(200_000));
    assert!(got[1].bytes().is_empty());
    assert!(got[1].text().unwrap_err().contains("limit for one line"));
    assert_eq!(got[2].text().unwrap(), "after");
    assert_eq!(got[2].number, 3);
}

#[test]
fn lines_stop_with_an_error_past_the_file_limit() {
    let status = Path::new("/proc/self/status");
    let mut reader = lines_within(status, Kind::Session, 64, LINE_LIMIT).unwrap();
    let err = reader.find_map(Result::err).unwrap();
    assert!(
        matches!(err, ReadError::TooLarge { size: None, .. }),
        "{err}"
    );
    assert!(reader.next().is_none());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    std::fs::write(&path, "x\n".repeat(100)).unwrap();
    let err = lines_within(&path, Kind::Session, 64, LINE_LIMIT)
        .err()
        .unwrap();
    assert!(err.to_string().contains("limits.session_mb"), "{err}");
}

#[test]
fn hashing_covers_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.jsonl");
    let content = "one\ntwo\r\n\nthree";
    std::fs::write(&path, content).unwrap();
    let mut reader = lines(&path, Kind::Dataset).unwrap().hashing();
    assert_eq!(reader.by_ref().count(), 4);
    assert_eq!(
        reader.sha256_hex().unwrap(),
        crate::hashing::sha256_hex(content.as_bytes())
    );
}
