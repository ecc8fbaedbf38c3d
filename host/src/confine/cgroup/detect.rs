//! Which cgroup hierarchies bosun sits in: read from `/proc/self/mountinfo`
//! and `/proc/self/cgroup`, nothing created.

use std::path::{Path, PathBuf};

use super::Controller;

/// The cgroup2 mount, as mountinfo shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V2Mount {
    pub(super) point: PathBuf,
    pub(super) mount_options: String,
    pub(super) super_options: String,
}

/// The cgroup hierarchies this process sits in.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostCgroups {
    /// Our own cgroup2 dir.
    pub(super) v2: Option<PathBuf>,
    /// The cgroup2 mount: its mount point, its mount options (`nosuid`,
    /// …) and its super options (`nsdelegate`, …).
    pub(super) v2_mount: Option<V2Mount>,
    /// Our own dir in each v1 hierarchy of a controller bosun uses.
    pub(super) v1: Vec<(Controller, PathBuf)>,
}

impl HostCgroups {
    /// Read `/proc/self/mountinfo` and `/proc/self/cgroup`.
    pub(crate) fn detect() -> Self {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Self::parse(&mountinfo, &membership)
    }

    fn parse(mountinfo: &str, membership: &str) -> Self {
        let own = |hierarchy: &dyn Fn(&str) -> bool| -> Option<String> {
            membership.lines().find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
                hierarchy(controllers).then(|| path.to_string())
            })
        };
        let mut found = Self::default();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(dash) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (root, mount) = (fields.get(3), fields.get(4));
            let (fstype, options) = (fields.get(dash + 1), fields.get(dash + 3));
            let (Some(root), Some(mount), Some(fstype)) = (root, mount, fstype) else {
                continue;
            };
            let dir = |path: String| {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                PathBuf::from(mount).join(rel.trim_start_matches('/'))
            };
            if *fstype == "cgroup2" && found.v2.is_none() {
                found.v2 = own(&|c| c.is_empty()).map(dir);
                found.v2_mount = Some(V2Mount {
                    point: PathBuf::from(mount),
                    mount_options: fields.get(5).unwrap_or(&"").to_string(),
                    super_options: options.unwrap_or(&"").to_string(),
                });
            } else if *fstype == "cgroup" {
                let options: Vec<&str> =
                    options.map(|o| o.split(',').collect()).unwrap_or_default();
                for controller in Controller::ALL {
                    if options.contains(&controller.name()) {
                        let path = own(&|c| c.split(',').any(|x| x == controller.name()));
                        if let Some(path) = path {
                            found.v1.push((controller, dir(path)));
                        }
                    }
                }
            }
        }
        found
    }

    /// Where `controller` would likely be had, judged without changing
    /// anything: cgroup2 when bosun's cgroup lists it, else a v1 mount.
    pub(crate) fn layer_hint(&self, controller: Controller) -> Option<&'static str> {
        let v2 = self.v2.as_ref().is_some_and(|own| {
            std::fs::read_to_string(delegated(own).join("cgroup.controllers"))
                .is_ok_and(|s| s.split_whitespace().any(|c| c == controller.name()))
        });
        if v2 {
            Some("cgroup v2")
        } else if self.v1.iter().any(|(c, _)| *c == controller) {
            Some("cgroup v1")
        } else {
            None
        }
    }

    /// Where this bosun's cgroup2 tree named `tag` goes.
    pub(crate) fn leaf_base(&self, tag: &str) -> Option<PathBuf> {
        self.v2.as_deref().map(|own| delegated(own).join(tag))
    }

    /// Whether a cgroup2 hierarchy is there.
    pub(crate) fn has_v2(&self) -> bool {
        self.v2.is_some()
    }

    /// Whether any hierarchy is there at all.
    pub(crate) fn any(&self) -> bool {
        self.v2.is_some() || !self.v1.is_empty()
    }
}

/// The cgroup bosun's own tree goes in, given bosun's own cgroup: its
/// parent when bosun sits in a `supervisor` subgroup (systemd's
/// `DelegateSubgroup=supervisor`), else the cgroup itself.
pub(super) fn delegated(own: &Path) -> &Path {
    match own.file_name() {
        Some(n) if n == "supervisor" => own.parent().unwrap_or(own),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn finds_a_hybrid_hosts_hierarchies() {
        let mountinfo = "\
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu,cpuacct
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let membership = "8:pids:/\n4:memory:/jobs/42\n1:cpu,cpuacct:/\n0::/\n";
        let host = HostCgroups::parse(mountinfo, membership);
        assert_eq!(host.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(
            host.v2_mount,
            Some(V2Mount {
                point: PathBuf::from("/sys/fs/cgroup/unified"),
                mount_options: "rw,relatime".into(),
                super_options: "rw".into(),
            })
        );
        assert_eq!(
            host.v1,
            vec![
                (
                    Controller::Memory,
                    PathBuf::from("/sys/fs/cgroup/memory/jobs/42")
                ),
                (Controller::Cpu, PathBuf::from("/sys/fs/cgroup/cpu")),
                (Controller::Pids, PathBuf::from("/sys/fs/cgroup/pids")),
            ]
        );
    }

    #[test]
    fn finds_a_systemd_services_cgroup() {
        let mountinfo = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        let membership = "0::/system.slice/bosun.service/supervisor\n";
        let host = HostCgroups::parse(mountinfo, membership);
        assert_eq!(
            host.v2,
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/bosun.service/supervisor"
            ))
        );
        assert!(host.v1.is_empty());
    }
}
