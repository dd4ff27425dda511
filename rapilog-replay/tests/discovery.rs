// SPDX-License-Identifier: GPL-2.0

//! Finding the log disk by identity in a fake sysfs tree: the identity rule
//! for virtio, NVMe and SCSI disks and partitions, refusals for none and
//! several, waiting for a late disk, and device nodes.

mod common;

use std::time::{Duration, Instant};

use common::{FakeSysfs, TempDir};
use rapilog_replay::discover::{device_node, disk_ids, find_by_id, scan, FindError};

/// A machine with a virtio disk (partitioned), an NVMe namespace, a SATA
/// disk behind SCSI, and a RAM disk without any id.
fn machine() -> FakeSysfs {
    let s = FakeSysfs::new();
    s.disk("vda", (253, 0), 131072, 512);
    s.put("block/vda/serial", b"rl-log\n");
    s.partition("vda", "vda1", 1, (253, 1), 2048);
    s.partition("vda", "vda2", 2, (253, 2), 129024);
    s.disk("nvme0n1", (259, 0), 1953525168, 4096);
    s.put("block/nvme0n1/wwid", b"eui.0025388b71b2cd31\n");
    s.put("block/nvme0n1/device/serial", b"S4EWNX0R123456      \n");
    s.put(
        "block/nvme0n1/device/model",
        b"Samsung SSD 970 EVO Plus 1TB            \n",
    );
    s.put("block/nvme0n1/nsid", b"1\n");
    s.disk("sda", (8, 0), 3907029168, 512);
    s.put("block/sda/device/wwid", b"naa.5000c500a1b2c3d4\n");
    let mut page = vec![0u8, 0x80, 0, 20];
    page.extend_from_slice(b"        ZC1A2B3C    ");
    s.put("block/sda/device/vpd_pg80", &page);
    s.disk("ram0", (1, 0), 8192, 512);
    s
}

fn ids(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn identity_rule_per_device_kind() {
    let s = machine();
    let devs = scan(s.root()).unwrap();
    let names: Vec<_> = devs.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["nvme0n1", "ram0", "sda", "vda", "vda1", "vda2"]);
    let by = |n: &str| devs.iter().find(|d| d.name == n).unwrap();
    assert_eq!(
        by("vda").ids,
        ids(&["serial:rl-log", "/dev/disk/by-id/virtio-rl-log"])
    );
    assert_eq!(by("vda").sectors, 131072);
    assert_eq!((by("vda").major, by("vda").minor), (253, 0));
    assert_eq!(
        by("vda1").ids,
        ids(&["serial:rl-log-part1", "/dev/disk/by-id/virtio-rl-log-part1"])
    );
    assert_eq!(by("vda2").partition, Some(2));
    assert_eq!((by("vda2").sectors, by("vda2").block_bytes), (129024, 512));
    assert_eq!(
        by("nvme0n1").ids,
        ids(&[
            "serial:S4EWNX0R123456",
            "wwid:eui.0025388b71b2cd31",
            "/dev/disk/by-id/nvme-eui.0025388b71b2cd31",
            // (with the namespace, "_1", it would exceed 64 bytes)
            "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456",
        ])
    );
    assert_eq!(by("nvme0n1").block_bytes, 4096);
    assert_eq!(
        by("sda").ids,
        ids(&[
            "serial:ZC1A2B3C",
            "wwid:naa.5000c500a1b2c3d4",
            "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"
        ])
    );
    assert!(by("ram0").ids.is_empty());
    assert_eq!(by("ram0").ids_text(), "no id");
}

#[test]
fn finds_each_disk_and_partition_by_any_of_its_ids() {
    let s = machine();
    for (id, name) in [
        ("serial:rl-log", "vda"),
        ("serial:rl-log-part2", "vda2"),
        ("wwid:eui.0025388b71b2cd31", "nvme0n1"),
        ("serial:S4EWNX0R123456", "nvme0n1"),
        ("wwid:naa.5000c500a1b2c3d4", "sda"),
        ("serial:ZC1A2B3C", "sda"),
        ("/dev/disk/by-id/virtio-rl-log", "vda"),
        ("/dev/disk/by-id/virtio-rl-log-part1", "vda1"),
        ("/dev/disk/by-id/nvme-eui.0025388b71b2cd31", "nvme0n1"),
        ("/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "sda"),
        (
            "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_Plus_1TB_S4EWNX0R123456",
            "nvme0n1",
        ),
    ] {
        let dev = find_by_id(s.root(), id.as_bytes(), Duration::ZERO).unwrap();
        assert_eq!(dev.name, name, "{id}");
    }
}

#[test]
fn ids_match_exactly() {
    let s = machine();
    for id in [
        "rl-log",
        "serial:rl-lo",
        "serial:rl-log ",
        "serial:RL-LOG",
        "wwid:rl-log",
        "serial:rl-log-part3",
    ] {
        let e = find_by_id(s.root(), id.as_bytes(), Duration::ZERO).unwrap_err();
        assert!(matches!(e, FindError::NotFound { .. }), "{id}: {e}");
    }
}

#[test]
fn no_match_is_refused_naming_what_was_seen() {
    let s = machine();
    let e = find_by_id(s.root(), b"serial:rl-other", Duration::ZERO).unwrap_err();
    let text = e.to_string();
    assert!(
        text.starts_with("no disk has identity serial:rl-other (seen: "),
        "{text}"
    );
    assert!(
        text.contains("vda serial:rl-log, /dev/disk/by-id/virtio-rl-log)"),
        "{text}"
    );
    assert!(text.contains("ram0 no id"), "{text}");
    assert!(
        !text.contains("vda1"),
        "partitions clutter the message: {text}"
    );
    let empty = FakeSysfs::new();
    let e = find_by_id(empty.root(), b"serial:x", Duration::ZERO).unwrap_err();
    assert!(e.to_string().contains("no block devices at all"), "{e}");
    let e = find_by_id(s.root(), b"/dev/vda", Duration::ZERO).unwrap_err();
    assert!(
        e.to_string().contains("a device name is not an identity"),
        "{e}"
    );
    let missing = TempDir::new("nosysfs");
    let e = find_by_id(missing.path(), b"serial:x", Duration::ZERO).unwrap_err();
    assert!(matches!(e, FindError::Sysfs(_)), "{e}");
}

#[test]
fn several_matches_are_refused() {
    let s = machine();
    s.disk("vdb", (253, 16), 131072, 512);
    s.put("block/vdb/serial", b"rl-log");
    let e = find_by_id(s.root(), b"serial:rl-log", Duration::from_secs(5)).unwrap_err();
    let FindError::Ambiguous { matches, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(matches.len(), 2);
    assert_eq!(
        e.to_string(),
        "2 disks have identity serial:rl-log: vda, vdb; refusing to guess"
    );
}

#[test]
fn nvme_controller_serial_is_ambiguous_with_two_namespaces() {
    let s = FakeSysfs::new();
    for (n, minor) in [("nvme0n1", 0), ("nvme0n2", 1)] {
        s.disk(n, (259, minor), 1000, 512);
        s.put(&format!("block/{n}/device/serial"), b"CTRL1");
        s.put(
            &format!("block/{n}/wwid"),
            format!("eui.{minor}").as_bytes(),
        );
    }
    assert!(matches!(
        find_by_id(s.root(), b"serial:CTRL1", Duration::ZERO),
        Err(FindError::Ambiguous { .. })
    ));
    assert_eq!(
        find_by_id(s.root(), b"wwid:eui.1", Duration::ZERO)
            .unwrap()
            .name,
        "nvme0n2"
    );
}

#[test]
fn ids_longer_than_the_field_are_not_offered() {
    let s = FakeSysfs::new();
    s.disk("vda", (253, 0), 1000, 512);
    s.put("block/vda/serial", "x".repeat(57).as_bytes()); // "serial:" + 57 = 64, by-id too long
    s.disk("vdb", (253, 16), 1000, 512);
    s.put("block/vdb/serial", "y".repeat(58).as_bytes());
    s.partition("vda", "vda1", 1, (253, 1), 100);
    assert_eq!(disk_ids(&s.root().join("block/vda")).len(), 1);
    assert!(disk_ids(&s.root().join("block/vdb")).is_empty());
    let devs = scan(s.root()).unwrap();
    assert!(devs
        .iter()
        .find(|d| d.name == "vda1")
        .unwrap()
        .ids
        .is_empty());
}

#[test]
fn by_id_aliases_only_for_names_udev_keeps() {
    let s = FakeSysfs::new();
    s.disk("vda", (253, 0), 1000, 512);
    s.put("block/vda/serial", b"has space");
    s.disk("sdb", (8, 16), 1000, 512);
    s.put("block/sdb/device/wwid", b"t10.ATA     QEMU HARDDISK");
    let devs = scan(s.root()).unwrap();
    assert_eq!(devs[0].ids, ids(&["wwid:t10.ATA     QEMU HARDDISK"]));
    assert_eq!(devs[1].ids, ids(&["serial:has space"]));
    assert_eq!(devs[1].ids_text(), "serial:has\\x20space");
}

#[test]
fn nvme_model_serial_names_follow_udev() {
    let s = FakeSysfs::new();
    s.disk("nvme1n1", (259, 5), 1000, 512);
    s.put("block/nvme1n1/device/model", b"  WD  Blue/SN570 (1TB)\t \n");
    s.put("block/nvme1n1/device/serial", b"22 03\n");
    s.put("block/nvme1n1/nsid", b"2\n");
    s.disk("sdc", (8, 32), 1000, 512); // not NVMe: no model_serial name
    s.put("block/sdc/device/model", b"QEMU HARDDISK");
    let devs = scan(s.root()).unwrap();
    assert_eq!(
        devs[0].ids,
        ids(&[
            "serial:22 03",
            "/dev/disk/by-id/nvme-WD_Blue_SN570__1TB__22_03",
            "/dev/disk/by-id/nvme-WD_Blue_SN570__1TB__22_03_2"
        ])
    );
    assert!(devs[1].ids.is_empty());
}

#[test]
fn entries_without_dev_or_size_are_ignored_and_ro_is_noticed() {
    let s = machine();
    s.put("block/broken/serial", b"rl-x");
    s.put("block/vda/ro", b"1\n");
    let devs = scan(s.root()).unwrap();
    assert!(devs.iter().all(|d| d.name != "broken"));
    assert!(devs.iter().find(|d| d.name == "vda").unwrap().read_only);
    assert!(devs.iter().find(|d| d.name == "vda1").unwrap().read_only);
}

#[test]
fn waits_for_a_disk_that_appears_late() {
    let s = machine();
    let root = s.root().to_path_buf();
    let start = Instant::now();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        std::fs::create_dir_all(root.join("block/vdc/queue")).unwrap();
        std::fs::write(root.join("block/vdc/serial"), b"rl-late").unwrap();
        std::fs::write(root.join("block/vdc/queue/logical_block_size"), b"512").unwrap();
        std::fs::write(root.join("block/vdc/size"), b"100").unwrap();
        std::fs::write(root.join("block/vdc/dev"), b"253:32").unwrap();
    });
    let dev = find_by_id(s.root(), b"serial:rl-late", Duration::from_secs(10)).unwrap();
    writer.join().unwrap();
    assert_eq!(dev.name, "vdc");
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert!(start.elapsed() < Duration::from_secs(5));
    // Without waiting, and with a short wait, it is refused in time.
    let start = Instant::now();
    assert!(find_by_id(s.root(), b"serial:never", Duration::from_millis(600)).is_err());
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(600) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[test]
fn device_nodes() {
    let s = machine();
    let devs = scan(s.root()).unwrap();
    let vda = devs.iter().find(|d| d.name == "vda").unwrap();
    let dev = TempDir::new("dev");
    let scratch = TempDir::new("scratch");
    // A regular file stands in for the disk only when allowed (tests).
    std::fs::write(dev.join("vda"), b"").unwrap();
    assert_eq!(
        device_node(vda, dev.path(), scratch.path(), true).unwrap(),
        dev.join("vda")
    );
    // Otherwise a node is made with mknod (root only) in the scratch directory.
    match device_node(vda, dev.path(), scratch.path(), false) {
        Ok(node) => {
            assert_eq!(node, scratch.join("rapilog-rescue-vda"));
            use std::os::unix::fs::{FileTypeExt, MetadataExt};
            let meta = std::fs::metadata(&node).unwrap();
            assert!(meta.file_type().is_block_device());
            assert_eq!(meta.rdev(), rapilog_replay::sys::make_dev(253, 0));
            // and a matching node in the device directory is used as is
            std::fs::remove_file(dev.join("vda")).unwrap();
            std::fs::rename(&node, dev.join("vda")).unwrap();
            assert_eq!(
                device_node(vda, dev.path(), scratch.path(), false).unwrap(),
                dev.join("vda")
            );
        }
        Err(e) => assert!(e.contains("mknod"), "{e}"),
    }
}
