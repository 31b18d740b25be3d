//! The file output: alerts appended to a JSON-lines file that rotates by
//! size (`path`, `path.1`, … `path.N`, oldest dropped).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use super::Deliver;

pub struct RotatingFile {
    path: PathBuf,
    rotate_bytes: u64,
    keep: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    pub fn new(path: PathBuf, rotate_bytes: u64, keep: usize) -> RotatingFile {
        RotatingFile {
            path,
            rotate_bytes: rotate_bytes.max(1),
            keep: keep.max(1),
            file: None,
            size: 0,
        }
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> anyhow::Result<()> {
        self.file = None;
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))
                    .with_context(|| format!("cannot rotate {}", from.display()))?;
            }
        }
        if self.path.exists() {
            std::fs::rename(&self.path, self.numbered(1))
                .with_context(|| format!("cannot rotate {}", self.path.display()))?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Deliver for RotatingFile {
    fn name(&self) -> &str {
        "file"
    }

    fn deliver(&mut self, lines: &[String]) -> anyhow::Result<()> {
        for line in lines {
            if self.size > 0 && self.size + line.len() as u64 + 1 > self.rotate_bytes {
                self.rotate()?;
            }
            if self.file.is_none() {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .with_context(|| format!("cannot open {}", self.path.display()))?;
                self.size = file.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(file);
            }
            if let Some(file) = self.file.as_mut() {
                file.write_all(line.as_bytes())?;
                file.write_all(b"\n")?;
            }
            self.size += line.len() as u64 + 1;
        }
        if let Some(file) = self.file.as_mut() {
            file.flush()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("sw-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let mut out = RotatingFile::new(path.clone(), 25, 2);
        let lines: Vec<String> = (0..6).map(|i| format!("{{\"n\":{i:05}}}")).collect();
        out.deliver(&lines).unwrap();
        // Each line is 12 bytes with its newline: two per file.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
        assert!(dir.join("out.jsonl.1").exists());
        assert!(dir.join("out.jsonl.2").exists());
        assert!(
            !dir.join("out.jsonl.3").exists(),
            "only `keep` rotated files"
        );
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("00005"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
