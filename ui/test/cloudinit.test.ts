import { describe, expect, it } from "vitest";
import { fromForm, toForm } from "../src/pages/CloudInit";

describe("cloud-init form", () => {
  it("round-trips settings, a NIC without an entry being DHCP", () => {
    const ci = {
      hostname: "web-1", user: "ops", ssh_keys: ["ssh-ed25519 AAAA a"],
      ipconfig: [{ mode: "static" as const, address: "192.0.2.10/24", gateway: "192.0.2.1" }],
      dns: ["192.0.2.53"],
    };
    const f = toForm(ci, 2);
    expect(f.nics.map((n) => n.mode)).toEqual(["static", "dhcp"]);
    expect(fromForm(f)).toEqual(ci);
  });

  it("leaves empty fields and trailing DHCP NICs out; off is undefined", () => {
    const f = toForm(undefined, 2);
    expect(f.enabled).toBe(false);
    expect(fromForm(f)).toBeUndefined();
    f.enabled = true;
    expect(fromForm(f)).toEqual({});
    f.ssh_keys = "# mine\n\nssh-ed25519 AAAA a\n";
    f.dns = "192.0.2.53, 192.0.2.54";
    f.nics[1] = { mode: "static", address: " 10.0.0.5/8 ", gateway: "" };
    expect(fromForm(f)).toEqual({
      ssh_keys: ["ssh-ed25519 AAAA a"], dns: ["192.0.2.53", "192.0.2.54"],
      ipconfig: [{ mode: "dhcp" }, { mode: "static", address: "10.0.0.5/8" }],
    });
  });
});
