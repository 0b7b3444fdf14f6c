//! `sftp`'s tree changes through `assist ssh-proxy` (issue 17): mkdir, rename, remove and
//! rmdir inside a granted write root, each audited as `file.changed`; refused outside it,
//! onto an existing name, and on a root itself; a symbolic link is removed itself, never
//! what it points to.

use super::ssh::{ssh_config, text, tool};
use assist_tests::files_support::{agent_with, events, hold_session, noise, sha256};
use assist_tests::{Cli, TestRelay};
use std::path::Path;
use std::process::Output;

fn sftp(cli: &Cli, config: &Path, session: &str, script: &str) -> anyhow::Result<Output> {
    let batch = cli.dir.path().join("batch");
    std::fs::write(&batch, script)?;
    let env = [("ASSIST_SESSION", session)];
    Ok(tool(cli, "sftp", config, &env).arg("-b").arg(&batch).arg("erp-db01.assist").output()?)
}

#[test]
fn sftp_makes_renames_and_removes_inside_the_granted_root_and_nowhere_else() -> anyhow::Result<()> {
    let relay = TestRelay::start()?;
    relay.standard_world()?;
    let _agent = agent_with(&relay, "erp-db01", "acme", &[])?;
    let (alice, bob) = (relay.login("alice")?, relay.login("bob")?);
    let config = ssh_config(&alice)?;
    let disk = tempfile::tempdir()?;
    let (root, outside, local) =
        (disk.path().join("root"), disk.path().join("outside"), disk.path().join("local"));
    for d in [&root, &outside, &local] {
        std::fs::create_dir(d)?;
    }
    let (r, o) = (root.display().to_string(), outside.display().to_string());
    std::fs::write(local.join("a.txt"), "patch v2\n")?;
    std::fs::write(root.join("keep.txt"), "keep me\n")?;
    std::fs::write(outside.join("secret.txt"), "not yours\n")?;
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link"))?;
    let grant = [format!("files.read:{r}"), format!("files.write:{r}")];
    let held = hold_session(&alice, &bob, "erp-db01", &grant)?;

    // Made, put, renamed: each takes effect.
    let l = local.display();
    let script = format!("mkdir {r}/new\nput {l}/a.txt {r}/new/a.txt\nrename {r}/new/a.txt {r}/new/b.txt\n");
    let out = sftp(&alice, &config, &held.id, &script)?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.join("new/a.txt").exists());
    assert_eq!(std::fs::read_to_string(root.join("new/b.txt"))?, "patch v2\n");

    // Refused, with nothing changed: onto an existing name, outside the root, the root.
    for (script, why) in [
        (format!("rename {r}/new/b.txt {r}/keep.txt\n"), "exists already"),
        (format!("rm {o}/secret.txt\n"), "refused"),
        (format!("rename {r}/keep.txt {o}/keep.txt\n"), "refused"),
        (format!("mkdir {o}/planted\n"), "refused"),
        (format!("rmdir {r}\n"), "granted root"),
    ] {
        let out = sftp(&alice, &config, &held.id, &script)?;
        assert!(!out.status.success(), "{script}: {}", text(&out));
        assert!(text(&out).contains(why), "{script}: {}", text(&out));
    }
    assert_eq!(std::fs::read_to_string(root.join("keep.txt"))?, "keep me\n");
    assert_eq!(std::fs::read_to_string(root.join("new/b.txt"))?, "patch v2\n");
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt"))?, "not yours\n");
    assert!(!outside.join("planted").exists() && !outside.join("keep.txt").exists());

    // Removed: a file, then its directory, and a link (itself, not what it points to).
    let out = sftp(&alice, &config, &held.id, &format!("rm {r}/new/b.txt\nrmdir {r}/new\nrm {r}/link\n"))?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!root.join("new").exists());
    assert!(std::fs::symlink_metadata(root.join("link")).is_err());
    assert_eq!(std::fs::read_to_string(outside.join("secret.txt"))?, "not yours\n");

    // Reads are streamed: a whole file, and a resumed one (`reget` starts further on: the
    // bytes before are read through, so both digests still cover the whole file).
    let big = noise(300 * 1024 + 11, 5);
    std::fs::write(root.join("big.bin"), &big)?;
    std::fs::write(local.join("part.bin"), &big[..1000])?;
    let script = format!("get {r}/big.bin {l}/big.bin\nreget {r}/big.bin {l}/part.bin\n");
    let out = sftp(&alice, &config, &held.id, &script)?;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(local.join("big.bin"))?, big);
    assert_eq!(std::fs::read(local.join("part.bin"))?, big);
    let moved = events(&relay, &held.id, "file.transferred")?;
    let reads: Vec<_> = moved.iter().filter(|e| e["detail"]["direction"] == "download").collect();
    assert_eq!(reads.len(), 2, "{moved:?}");
    for e in reads {
        assert_eq!(e["detail"]["sha256_agent"], sha256(&big), "{e}");
        assert_eq!(e["detail"]["sha256_engineer"], sha256(&big), "{e}");
    }

    // Each change audited with the real paths.
    let changes = events(&relay, &held.id, "file.changed")?;
    let ops: Vec<&str> = changes.iter().filter_map(|e| e["detail"]["op"].as_str()).collect();
    assert_eq!(ops, ["mkdir", "rename", "remove", "rmdir", "remove"], "{changes:?}");
    let real_root = std::fs::canonicalize(&root)?.display().to_string();
    assert_eq!(changes[1]["detail"]["to"], format!("{real_root}/new/b.txt"), "{changes:?}");
    Ok(())
}
