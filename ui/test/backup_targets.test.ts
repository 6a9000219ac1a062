import { describe, expect, it } from "vitest";
import { fingerprintError, nfsExportError, nfsOptionsError, sftpLocationError } from "../src/pages/BackupTargets";

describe("backup targets", () => {
  it("checks sftp locations and host key fingerprints as the API does", () => {
    for (const ok of ["bk@nas.example:/srv/keel", "root@127.0.0.1:2222:/b", "u@[::1]:22:/x", "a.b-c@h:/"])
      expect(sftpLocationError(ok)).toBeNull();
    for (const bad of ["nas:/srv", "bk@nas:srv", "bk@nas:22:srv", "b k@nas:/srv", "bk@na$s:/srv", "bk@nas:/srv/../etc"])
      expect(sftpLocationError(bad)).not.toBeNull();
    expect(sftpLocationError("bk@nas:99999:/srv")).toContain("port");
    expect(fingerprintError("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")).toBeNull();
    expect(fingerprintError("SHA256:short")).not.toBeNull();
    expect(fingerprintError("MD5:aa:bb")).not.toBeNull();
  });

  it("checks nfs exports as the API does, saying why a bad one is refused", () => {
    for (const ok of ["nas.example:/srv/keel", "10.0.0.5:/backups", "[fd00::5]:/"])
      expect(nfsExportError(ok)).toBeNull();
    for (const [bad, why] of [
      ["/srv/keel", "not an NFS export"],
      ["nas", "not an NFS export"],
      ["[fd00::5/x", "not an NFS export"],
      ["nas:srv", "not an absolute path"],
      ["nas:/a/../b", "not an absolute path"],
      ["nas:/a,b", "not an absolute path"],
      ["nas:/a b", "not an absolute path"],
      ["-o:/x", "not a host name or address"],
      ["n s:/x", "not a host name or address"],
    ])
      expect(nfsExportError(bad), bad).toContain(why);
    expect(nfsExportError("nas")).toContain("use server:/path (e.g. nas.example:/srv/keel-backups)");
  });

  it("checks nfs mount options as the API does", () => {
    for (const ok of ["", "vers=4.2,nconnect=4,hard,sec=sys", "noresvport", "proto=tcp,port=2049"])
      expect(nfsOptionsError(ok)).toBeNull();
    for (const [bad, why] of [
      ["remount", "is not one Keel passes on"],
      ["suid", "is not one Keel passes on"],
      ["vers=4,,hard", "is not one Keel passes on"],
      ["vers", "needs a value"],
      ["vers=", "needs a value"],
      ["hard=1", "takes no value"],
      ["port=1 2", "needs a value"],
    ])
      expect(nfsOptionsError(bad), bad).toContain(why);
    expect(nfsOptionsError(`vers=${"4".repeat(260)}`)).toContain("256");
  });
});
