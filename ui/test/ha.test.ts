import { describe, expect, it } from "vitest";
import { haFormError } from "../src/pages/Ha";

describe("haFormError", () => {
  it("accepts empty fields (server defaults) and whole numbers in range", () => {
    expect(haFormError("", "")).toBeNull();
    expect(haFormError("0", "1")).toBeNull();
    expect(haFormError("1000000", "1000")).toBeNull();
  });
  it("names the field that is wrong", () => {
    expect(haFormError("x", "")).toMatch(/Priority is a whole number/);
    expect(haFormError("1000001", "")).toMatch(/at most 1000000/);
    expect(haFormError("", "0")).toMatch(/Restarts/);
    expect(haFormError("", "1001")).toMatch(/Restarts/);
    expect(haFormError("", "2.5")).toMatch(/Restarts/);
  });
});
