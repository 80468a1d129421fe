// Pure parts of the page outside the run view: where an error's field path is in the YAML,
// the preview's task graph, the routes, and the formats. Run: `npx vitest run src/units`.
import { describe, expect, it } from "vitest";
import { locate, parsePath, preview } from "../dagdoc";
import { match, metricsPath, runPath } from "../router";
import { SEED } from "../seed";
import { duration } from "../ui";
import { chartData, runTicks } from "../views/chart";

describe("parsePath", () => {
  it("splits keys and indexes", () => {
    expect(parsePath("tasks[1].depends_on[0]")).toEqual(["tasks", 1, "depends_on", 0]);
    expect(parsePath("dagName")).toEqual(["dagName"]);
    expect(parsePath("")).toEqual([]);
  });
});

describe("locate", () => {
  it("finds a nested value's line", () => {
    expect(locate(SEED, "tasks[1].depends_on[0]")?.line).toBe(10);
    expect(locate(SEED, "tasks[1].inputs[0].fromTask")?.line).toBe(13);
    expect(locate(SEED, "dagName")?.line).toBe(2);
  });
  it("marks a key with its value, on the key's line", () => {
    const at = locate(SEED, "tasks[0].outputs")!;
    expect(at.line).toBe(7);
    expect(SEED.slice(at.from, at.to)).toBe('outputs: ["output.txt"]');
    expect(at.exact).toBe(true);
  });
  it("falls back to the deepest part that exists", () => {
    const at = locate(SEED, "tasks[1].retries")!;
    expect(at.line).toBe(8);
    expect(at.exact).toBe(false);
    expect(locate(SEED, "tasks[7].name")?.line).toBe(3); // the `tasks:` key
  });
  it("reads the line of a syntax error from its reason", () => {
    expect(locate(SEED, "", 'expected <block end>, in "<byte string>", line 5, column 4')?.line).toBe(5);
    expect(locate(SEED, "", "no position")).toBeNull();
  });
  it("works on JSON documents too", () => {
    const json = '{\n  "apiVersion": "v1",\n  "dagName": "x",\n  "tasks": [\n    {"name": "a", "command": []}\n  ]\n}\n';
    expect(locate(json, "tasks[0].command")?.line).toBe(5);
  });
});

describe("preview", () => {
  it("draws edges from depends_on and inputs, once each", () => {
    const p = preview(SEED);
    expect(p.problem).toBeNull();
    expect(p.name).toBe("cache-test");
    expect(p.tasks).toEqual(["generate-data", "process-data"]);
    expect(p.edges).toEqual([["generate-data", "process-data"]]);
  });
  it("reports syntax errors with their lines", () => {
    const p = preview("dagName: x\ntasks:\n  - name: a\n   image: x\n");
    expect(p.problem).toMatch(/^line \d+:/);
    expect(p.syntax.length).toBeGreaterThan(0);
    expect(p.tasks).toEqual([]);
  });
  it("says when there is nothing to draw", () => {
    expect(preview("apiVersion: v1\n").problem).toBe("no tasks yet");
    expect(preview("- a\n- b\n").problem).toBe("the document is not a mapping");
  });
});

describe("routes", () => {
  it("matches every page path", () => {
    expect(match("/")).toEqual({ name: "runs" });
    expect(match("/submit/")).toEqual({ name: "submit" });
    expect(match("/templates")).toEqual({ name: "templates" });
    expect(match(runPath("ab12"))).toEqual({ name: "run", dagId: "ab12" });
    expect(match(metricsPath("cache-test"))).toEqual({ name: "metrics", dagName: "cache-test" });
    expect(match("/dags/%E0%A4%A")).toEqual({ name: "notfound", path: "/dags/%E0%A4%A" });
    expect(match("/runs/a/b").name).toBe("notfound");
  });
});

describe("formats", () => {
  it("durations read well at every scale", () => {
    expect(duration(null)).toBe("—");
    expect(duration(850)).toBe("850 ms");
    expect(duration(4200)).toBe("4.20 s");
    expect(duration(65_000)).toBe("1 min 05 s");
    expect(duration(3_720_000)).toBe("1 h 02 min");
  });
});

describe("chart", () => {
  it("puts runs oldest first, cached and not cached apart, failures out", () => {
    const runs = [
      { dagId: "c", durationMs: 3000, cacheEnabled: false, status: "SUCCEEDED" },
      { dagId: "b", durationMs: 9000, cacheEnabled: true, status: "FAILED" },
      { dagId: "a", durationMs: 1000, cacheEnabled: true, status: "SUCCEEDED" },
    ];
    const data = chartData(runs, { p50Ms: 1000, p95Ms: 1000 }, { p50Ms: 3000, p95Ms: null });
    expect(data[0]).toEqual([1, 2, 3]);
    expect(data[1]).toEqual([1, null, null]);
    expect(data[2]).toEqual([null, null, 3]);
    expect(data[3]).toEqual([1, 1, 1]);
    expect(data[6]).toEqual([null, null, null]);
  });
  it("labels whole runs, a dozen at most", () => {
    expect(runTicks(3)).toEqual([1, 2, 3]);
    expect(runTicks(100).length).toBeLessThanOrEqual(13);
  });
});
