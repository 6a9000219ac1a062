import { describe, expect, it } from "vitest";
import { fingerprintError, sftpLocationError } from "../src/pages/BackupTargets";

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
});
