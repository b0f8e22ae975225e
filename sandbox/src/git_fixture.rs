//! The git remote of the sandbox: a bare repository holding `shop`, a small Python
//! service with its tests, released as `v1.4.0`, `v1.4.1` (a hotfix) and `v1.4.2`, with
//! one unreleased commit on `main` after the last release, as a hotfix finds it.
//!
//! History (fixed authors and dates, so the commits are the same on every machine):
//!
//! ```text
//! * feat: order history (unreleased)                        main
//! * feat: discount codes                                     v1.4.2
//! * fix: round line totals half up (hotfix)                  v1.4.1
//! * feat: shop service with order totals                     v1.4.0
//! ```
//!
//! `v1.4.2` carries the demo's incident: an unknown discount code raises `KeyError`
//! in `shop/discounts.py` (a 500 at checkout); the one-line fix is
//! `CODES.get(code.upper(), 0)`. Tests: `sh tests/run.sh [PATTERN]` (Python's
//! `unittest`, no network; `PATTERN` picks `tests/test_*PATTERN*.py`, and a jest-style
//! `--testPathPattern=X` is understood too), also as `npm test`; `package.json` holds
//! the version, so `npm version patch --no-git-tag-version` bumps it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's name in `<dir>/git/`.
pub const REPO: &str = "shop.git";
/// The release tags, oldest first.
pub const TAGS: [&str; 3] = ["v1.4.0", "v1.4.1", "v1.4.2"];

struct Commit {
    date: &'static str,
    message: &'static str,
    tag: Option<&'static str>,
    files: &'static [(&'static str, &'static str)],
}

const PACKAGE_JSON: &str = r#"{
  "name": "shop",
  "version": "VERSION",
  "private": true,
  "description": "The demo shop service of runner's sandbox",
  "scripts": {
    "test": "sh tests/run.sh",
    "typecheck": "python3 -m compileall -q shop",
    "lint": "python3 -m compileall -q tests",
    "build": "python3 -m compileall -q shop tests",
    "test:smoke:staging": "python3 tests/smoke.py",
    "start": "python3 -m shop.app"
  }
}
"#;

const SMOKE_PY: &str = r#""""Staging smoke test: the health endpoint answers 200 ok (STAGING_URL)."""
import json
import os
import urllib.request

url = os.environ.get("STAGING_URL", "http://127.0.0.1:8081").rstrip("/") + "/health"
with urllib.request.urlopen(url, timeout=5) as answer:
    body = json.load(answer)
    assert answer.status == 200 and body.get("status") == "ok", body
print("smoke ok:", body)
"#;

const RUN_SH: &str = r#"#!/bin/sh
# Runs the unit tests (Python's unittest, no network needed).
#   tests/run.sh            every test
#   tests/run.sh hotfix     tests/test_*hotfix*.py only (also --testPathPattern=hotfix)
set -eu
cd "$(dirname "$0")/.."
pattern="${1:-}"
pattern="${pattern#--testPathPattern=}"
exec "${PYTHON:-python3}" -m unittest discover -s tests -t . -p "test_*${pattern}*.py" -v
"#;

const INIT_PY: &str = "";
const TESTS_INIT_PY: &str = "";

const ORDERS_V140: &str = r#""""Order totals."""

from decimal import ROUND_HALF_EVEN, Decimal

CENT = Decimal("0.01")


def line_total(price, quantity):
    """Price times quantity, in cents."""
    return (Decimal(str(price)) * quantity).quantize(CENT, ROUND_HALF_EVEN)


def order_total(lines, discount_percent=0):
    """The total of an order's lines, less a percentage."""
    subtotal = sum((line_total(l["price"], l["quantity"]) for l in lines), Decimal("0"))
    discount = (subtotal * Decimal(discount_percent) / 100).quantize(CENT, ROUND_HALF_EVEN)
    return subtotal - discount
"#;

const ORDERS_V141: &str = r#""""Order totals."""

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def line_total(price, quantity):
    """Price times quantity, in cents."""
    # HOTFIX v1.4.1: half up, as the invoices do (half even lost a cent on .005).
    return (Decimal(str(price)) * quantity).quantize(CENT, ROUND_HALF_UP)


def order_total(lines, discount_percent=0):
    """The total of an order's lines, less a percentage."""
    subtotal = sum((line_total(l["price"], l["quantity"]) for l in lines), Decimal("0"))
    discount = (subtotal * Decimal(discount_percent) / 100).quantize(CENT, ROUND_HALF_UP)
    return subtotal - discount
"#;

const APP_PY: &str = r#""""The shop's HTTP service: /health, / and /api/orders (python3 -m shop.app)."""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shop.orders import order_total

VERSION = json.load(open(os.path.join(os.path.dirname(__file__), "..", "package.json")))["version"]
ORDERS = [
    {"id": 1041, "item": "coffee beans", "lines": [{"price": "11.90", "quantity": 2}]},
    {"id": 1042, "item": "grinder", "lines": [{"price": "89.00", "quantity": 1}]},
]


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.answer(200, {"status": "ok", "version": VERSION})
        elif self.path == "/":
            self.answer(200, {"service": "shop", "version": VERSION})
        elif self.path == "/api/orders":
            orders = [{"id": o["id"], "item": o["item"], "total": str(order_total(o["lines"]))} for o in ORDERS]
            self.answer(200, {"version": VERSION, "orders": orders})
        else:
            self.answer(404, {"error": "no route for " + self.path})

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler).serve_forever()
"#;

const TEST_ORDERS: &str = r#"import unittest
from decimal import Decimal

from shop.orders import line_total, order_total


class OrderTotals(unittest.TestCase):
    def test_line_total(self):
        self.assertEqual(line_total("11.90", 2), Decimal("23.80"))

    def test_order_total(self):
        lines = [{"price": "11.90", "quantity": 2}, {"price": "89.00", "quantity": 1}]
        self.assertEqual(order_total(lines), Decimal("112.80"))

    def test_discount(self):
        self.assertEqual(order_total([{"price": "100", "quantity": 1}], 10), Decimal("90.00"))


if __name__ == "__main__":
    unittest.main()
"#;

const TEST_HOTFIX: &str = r#""""Regression tests of past hotfixes: run first by a new hotfix (tests/run.sh hotfix)."""

import unittest
from decimal import Decimal

from shop.orders import line_total


class HotfixRegressions(unittest.TestCase):
    def test_v1_4_1_rounds_half_up(self):
        self.assertEqual(line_total("0.125", 1), Decimal("0.13"))
        self.assertEqual(line_total("0.135", 1), Decimal("0.14"))


if __name__ == "__main__":
    unittest.main()
"#;

const DISCOUNTS_PY: &str = r#""""Discount codes."""

CODES = {"WELCOME10": 10, "VIP25": 25}


def discount_for(code):
    """The percentage a discount code gives; no code, no discount."""
    if not code:
        return 0
    return CODES[code.upper()]
"#;

const TEST_DISCOUNTS: &str = r#"import unittest

from shop.discounts import discount_for


class Discounts(unittest.TestCase):
    def test_known_codes(self):
        self.assertEqual(discount_for("welcome10"), 10)
        self.assertEqual(discount_for("VIP25"), 25)

    def test_no_code(self):
        self.assertEqual(discount_for(""), 0)
        self.assertEqual(discount_for(None), 0)


if __name__ == "__main__":
    unittest.main()
"#;

const HISTORY_PY: &str = r#""""Order history (unreleased)."""


def recent(orders, limit=10):
    """The newest orders first."""
    return sorted(orders, key=lambda o: o["id"], reverse=True)[:limit]
"#;

const TEST_HISTORY: &str = r#"import unittest

from shop.history import recent


class History(unittest.TestCase):
    def test_newest_first(self):
        self.assertEqual([o["id"] for o in recent([{"id": 1}, {"id": 3}, {"id": 2}], 2)], [3, 2])


if __name__ == "__main__":
    unittest.main()
"#;

const README: &str = r#"# shop

The demo service of runner's sandbox: order totals and discount codes behind a small
HTTP API (`/health`, `/`, `/api/orders`).

    sh tests/run.sh            # every test
    sh tests/run.sh hotfix     # the hotfix regression tests
    python3 -m shop.app        # serve on 127.0.0.1:$PORT (8080)

Releases are tagged `vX.Y.Z` on `main`; hotfixes branch from the production tag.
"#;

const CHANGELOG_V140: &str =
    "# Changelog\n\n## 1.4.0\n### Added\n- Order totals with a percentage discount.\n";
const CHANGELOG_V141: &str = "# Changelog\n\n## 1.4.0\n### Added\n- Order totals with a percentage discount.\n\n## 1.4.1 (hotfix)\n### Fixed\n- Line totals round half up, as invoices do.\n";
const CHANGELOG_V142: &str = "# Changelog\n\n## 1.4.0\n### Added\n- Order totals with a percentage discount.\n\n## 1.4.1 (hotfix)\n### Fixed\n- Line totals round half up, as invoices do.\n\n## 1.4.2\n### Added\n- Discount codes (WELCOME10, VIP25).\n";

fn history() -> Vec<Commit> {
    vec![
        Commit {
            date: "2025-01-06T10:00:00Z",
            message: "feat: shop service with order totals",
            tag: Some("v1.4.0"),
            files: &[
                ("README.md", README),
                ("CHANGELOG.md", CHANGELOG_V140),
                ("package.json", "1.4.0"),
                ("shop/__init__.py", INIT_PY),
                ("shop/orders.py", ORDERS_V140),
                ("shop/app.py", APP_PY),
                ("tests/__init__.py", TESTS_INIT_PY),
                ("tests/run.sh", RUN_SH),
                ("tests/smoke.py", SMOKE_PY),
                ("tests/test_orders.py", TEST_ORDERS),
            ],
        },
        Commit {
            date: "2025-01-13T16:30:00Z",
            message: "fix: round line totals half up (hotfix)\n\nInvoices round half up; half even lost a cent on .005.",
            tag: Some("v1.4.1"),
            files: &[
                ("CHANGELOG.md", CHANGELOG_V141),
                ("package.json", "1.4.1"),
                ("shop/orders.py", ORDERS_V141),
                ("tests/test_hotfix.py", TEST_HOTFIX),
            ],
        },
        Commit {
            date: "2025-01-20T11:00:00Z",
            message: "feat: discount codes",
            tag: Some("v1.4.2"),
            files: &[
                ("CHANGELOG.md", CHANGELOG_V142),
                ("package.json", "1.4.2"),
                ("shop/discounts.py", DISCOUNTS_PY),
                ("tests/test_discounts.py", TEST_DISCOUNTS),
            ],
        },
        Commit {
            date: "2025-01-22T09:15:00Z",
            message: "feat: order history (unreleased)",
            tag: None,
            files: &[
                ("shop/history.py", HISTORY_PY),
                ("tests/test_history.py", TEST_HISTORY),
            ],
        },
    ]
}

/// Creates (anew) the bare repository `<git_dir>/shop.git` and returns its path.
pub fn create(git_dir: &Path) -> Result<PathBuf, String> {
    let bare = git_dir.join(REPO);
    let work = git_dir.join(".shop-work");
    for d in [&bare, &work] {
        if d.exists() {
            fs::remove_dir_all(d).map_err(|e| format!("removing {}: {e}", d.display()))?;
        }
    }
    fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let result = build(&bare, &work);
    let _ = fs::remove_dir_all(&work);
    result.map(|()| bare)
}

fn build(bare: &Path, work: &Path) -> Result<(), String> {
    git(work, None, &["init", "--quiet", "--initial-branch=main"])?;
    for commit in history() {
        for (path, content) in commit.files {
            let file = work.join(path);
            if let Some(parent) = file.parent() {
                fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
            }
            let text = if *path == "package.json" {
                PACKAGE_JSON.replace("VERSION", content)
            } else {
                (*content).to_owned()
            };
            fs::write(&file, text).map_err(|e| format!("{}: {e}", file.display()))?;
            if path.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt as _;
                fs::set_permissions(&file, fs::Permissions::from_mode(0o755))
                    .map_err(|e| format!("{}: {e}", file.display()))?;
            }
        }
        git(work, None, &["add", "--all"])?;
        git(
            work,
            Some(commit.date),
            &["commit", "--quiet", "-m", commit.message],
        )?;
        if let Some(tag) = commit.tag {
            let message = format!("Release {tag}");
            git(work, Some(commit.date), &["tag", "-a", tag, "-m", &message])?;
        }
    }
    let bare_arg = bare
        .to_str()
        .ok_or("the sandbox folder's path is not UTF-8")?;
    git(
        work,
        None,
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=main",
            bare_arg,
        ],
    )?;
    git(work, None, &["push", "--quiet", bare_arg, "main", "--tags"])?;
    Ok(())
}

/// Runs git in `dir` with a fixed identity and no user or system configuration.
fn git(dir: &Path, date: Option<&str>, args: &[&str]) -> Result<(), String> {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Shop Team")
        .env("GIT_AUTHOR_EMAIL", "shop@example.com")
        .env("GIT_COMMITTER_NAME", "Shop Team")
        .env("GIT_COMMITTER_EMAIL", "shop@example.com");
    if let Some(date) = date {
        cmd.env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date);
    }
    let out = cmd.output().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "git not found (apt-get install git)".to_owned(),
        _ => format!("running git: {e}"),
    })?;
    if !out.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn the_remote_has_the_releases_and_their_tests_pass() {
        let dir = std::env::temp_dir().join(format!("runner-sandbox-git-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let bare = create(&dir).unwrap();
        assert_eq!(
            output(&bare, &["tag", "--list"])
                .lines()
                .collect::<Vec<_>>(),
            TAGS
        );
        assert_eq!(
            output(&bare, &["log", "--format=%s", "main"])
                .lines()
                .count(),
            4
        );
        // v1.4.2 is on main's history, and main is one commit ahead of it.
        assert_eq!(
            output(&bare, &["rev-list", "--count", "v1.4.2..main"]).trim(),
            "1"
        );
        // The same commits on every machine.
        let first = output(&bare, &["rev-parse", "v1.4.0^{commit}"]);
        let again = create(&dir).unwrap();
        assert_eq!(output(&again, &["rev-parse", "v1.4.0^{commit}"]), first);

        let checkout = dir.join("checkout");
        let status = Command::new("git")
            .args([
                "-c",
                "advice.detachedHead=false",
                "clone",
                "--quiet",
                "--branch",
                "v1.4.2",
            ])
            .arg(&bare)
            .arg(&checkout)
            .status()
            .unwrap();
        assert!(status.success());
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        for pattern in ["", "hotfix", "--testPathPattern=hotfix"] {
            let out = Command::new("sh")
                .arg("tests/run.sh")
                .arg(pattern)
                .env("PYTHON", python)
                .current_dir(&checkout)
                .output()
                .unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "tests/run.sh {pattern}: {log}");
            let ran = if pattern.is_empty() {
                "Ran 6 tests"
            } else {
                "Ran 1 test"
            };
            assert!(log.contains(ran), "tests/run.sh {pattern}: {log}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
