'use strict';
// Deploy tests: the Helm chart (rendered by ./render, validated against the
// Kubernetes schemas and checked for the properties the design asks for),
// values.schema.json, the Prometheus alerting rules (promtool), the compose
// file, the Dockerfile and the image's health check script.
//
// Usage: node check.js --renderer BIN --repo DIR --out DIR --node-modules DIR
//                      [--yamllint BIN] [--promtool BIN] [--build-dir DIR]
// With --build-dir (a CMake build holding the four binaries) it also checks
// that runtime-packages.txt provides every shared library they load.
// Prints one line per test and ends with "N passed, N failed".

const fs = require('fs');
const os = require('os');
const path = require('path');
const http = require('http');
const { spawnSync, spawn } = require('child_process');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const need of ['renderer', 'repo', 'out', 'node-modules']) {
  if (!args[need]) { console.error(`missing --${need}`); process.exit(2); }
}
const NM = path.resolve(args['node-modules']);
module.paths.unshift(NM);
const YAML = require('yaml');
const Ajv = require('ajv');
const { strictCheck } = require('./lib/strict.js');

const REPO = path.resolve(args.repo);
const OUT = path.resolve(args.out);
const CHART = path.join(REPO, 'deploy/helm/sluice');
const CASES = path.join(__dirname, 'cases');
const COMPOSE = path.join(REPO, 'deploy/compose/compose.yaml');
const DOCKERFILE = path.join(REPO, 'deploy/docker/Dockerfile');
const HEALTHCHECK = path.join(REPO, 'deploy/docker/healthcheck.sh');
const RULES = path.join(CHART, 'files/prometheus-rules.yaml');
const RULE_TESTS = path.join(__dirname, 'prometheus-rules.test.yaml');

// The binaries' command-line contract: flags per command, the environment
// variable each flag also reads, and the flags a command cannot run without.
const CONTRACT = {
  'sluice-controlplane migrate': {
    flags: { 'database-url': 'SLUICE_DATABASE_URL' },
    required: ['database-url'],
  },
  'sluice-controlplane serve': {
    flags: {
      'database-url': 'SLUICE_DATABASE_URL', 'grpc-listen': 'SLUICE_GRPC_LISTEN',
      'http-listen': 'SLUICE_HTTP_LISTEN', 'admin-token-file': 'SLUICE_ADMIN_TOKEN_FILE',
      'master-key-file': 'SLUICE_MASTER_KEY_FILE', 'node-token-file': 'SLUICE_NODE_TOKEN_FILE',
      'port-file': 'SLUICE_PORT_FILE', workers: 'SLUICE_WORKERS',
    },
    required: ['database-url', 'grpc-listen', 'http-listen', 'admin-token-file', 'master-key-file', 'node-token-file'],
  },
  'sluice-dataplane': {
    flags: {
      controlplane: 'SLUICE_CONTROLPLANE', 'node-token-file': 'SLUICE_NODE_TOKEN_FILE',
      listen: 'SLUICE_LISTEN', 'admin-listen': 'SLUICE_ADMIN_LISTEN', threads: 'SLUICE_THREADS',
      'node-id': 'SLUICE_NODE_ID', 'snapshot-cache': 'SLUICE_SNAPSHOT_CACHE',
      'spool-dir': 'SLUICE_SPOOL_DIR', 'drain-timeout': 'SLUICE_DRAIN_TIMEOUT',
    },
    required: ['controlplane', 'node-token-file', 'listen', 'admin-listen'],
  },
  sluicectl: { flags: { server: 'SLUICE_SERVER', 'token-file': 'SLUICE_ADMIN_TOKEN_FILE' }, required: ['server', 'token-file'] },
  'sluice-mockllm': { flags: { listen: null, 'api-key': null, 'port-file': null, threads: null }, required: ['listen', 'api-key'] },
};
const BINARIES = ['sluice-controlplane', 'sluice-dataplane', 'sluicectl', 'sluice-mockllm'];

// ---------------------------------------------------------------- harness
const results = { passed: 0, failed: 0, skipped: 0 };
const queue = [];
function test(name, fn) { queue.push({ name, fn }); }
class CheckError extends Error {}
class SkipTest extends Error {}
function assert(cond, msg) { if (!cond) throw new CheckError(msg); }
function eq(actual, expected, msg) {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new CheckError(`${msg}: got ${a}, want ${e}`);
}
async function runAll() {
  for (const { name, fn } of queue) {
    try {
      await fn();
      results.passed++;
      console.log(`ok   ${name}`);
    } catch (err) {
      if (err instanceof SkipTest) {
        results.skipped++;
        console.log(`skip ${name}: ${err.message}`);
        continue;
      }
      results.failed++;
      console.log(`FAIL ${name}\n     ${String(err instanceof CheckError ? err.message : err.stack).replace(/\n/g, '\n     ')}`);
    }
  }
  console.log(`\n${results.passed} passed, ${results.failed} failed${results.skipped ? `, ${results.skipped} skipped` : ''}`);
  process.exitCode = results.failed ? 1 : 0;
}

// ---------------------------------------------------------------- helpers
const parseYaml11 = (text) => YAML.parseAllDocuments(text, { version: '1.1', merge: true, prettyErrors: true });

function loadDocs(file) {
  const docs = [];
  for (const d of parseYaml11(fs.readFileSync(file, 'utf8'))) {
    if (d.errors.length) throw new CheckError(`${file}: ${d.errors.map(String).join('; ')}`);
    const obj = d.toJS();
    if (obj !== null && obj !== undefined) docs.push(obj);
  }
  return docs;
}

function render(name, valueFiles, extra = []) {
  const out = path.join(OUT, 'render', name);
  fs.rmSync(out, { recursive: true, force: true });
  const argv = ['-chart', CHART, '-name', 'sluice-test', '-namespace', 'llm', '-out', out, ...extra];
  for (const f of valueFiles) argv.push('-f', f);
  const r = spawnSync(args.renderer, argv, { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr, out };
}

const findAll = (docs, kind) => docs.filter((d) => d.kind === kind);
function findOne(docs, kind, nameSuffix) {
  const hits = docs.filter((d) => d.kind === kind && d.metadata.name.endsWith(nameSuffix));
  assert(hits.length === 1, `expected one ${kind} named *${nameSuffix}, found ${hits.length}`);
  return hits[0];
}
const isHook = (d) => Boolean(d.metadata.annotations && d.metadata.annotations['helm.sh/hook']);
const matches = (selector, labels) => Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);
const envOf = (c) => Object.fromEntries((c.env || []).map((e) => [e.name, e]));
const b64 = (s) => Buffer.from(s, 'base64').toString('utf8');
const portOf = (addr) => Number(String(addr).split(':').pop());

function podSpecOf(d) {
  if (d.kind === 'Deployment' || d.kind === 'Job') return d.spec.template.spec;
  return null;
}

// ------------------------------------------------- Kubernetes schema checks
function modelFor(apiVersion, kind) {
  if (apiVersion.startsWith('monitoring.coreos.com/')) {
    const dir = `@kubernetes-models/prometheus-operator/${apiVersion}`;
    return { mod: dir, dts: path.join(NM, dir, `${kind}.d.ts`) };
  }
  const dir = apiVersion.includes('/') ? `kubernetes-models/${apiVersion}` : 'kubernetes-models/v1';
  return { mod: dir, dts: path.join(NM, dir, `${kind}.d.ts`) };
}

function k8sValidate(obj) {
  const { mod, dts } = modelFor(obj.apiVersion, obj.kind);
  const Model = require(mod)[obj.kind];
  if (!Model) throw new CheckError(`no schema for ${obj.apiVersion} ${obj.kind}`);
  const problems = [];
  try { new Model(JSON.parse(JSON.stringify(obj))).validate(); } catch (e) { problems.push(e.message); }
  problems.push(...strictCheck(obj, dts, `I${obj.kind}`, NM));
  return problems;
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

// Invariants every successful render must keep.
function checkInvariants(docs, values, label) {
  const seen = new Set();
  for (const d of docs) {
    const id = `${d.kind}/${d.metadata && d.metadata.name}`;
    assert(d.apiVersion && d.kind && d.metadata && d.metadata.name, `${label}: object without apiVersion/kind/name: ${JSON.stringify(d).slice(0, 120)}`);
    assert(!seen.has(id), `${label}: duplicate ${id}`);
    seen.add(id);
    const problems = k8sValidate(d);
    assert(problems.length === 0, `${label}: ${id} fails Kubernetes schema validation:\n${problems.join('\n')}`);
    const nameRule = d.kind === 'Service' ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
    assert(nameRule.test(d.metadata.name) && d.metadata.name.length <= 63, `${label}: ${id}: name not a valid ${d.kind} name`);
    assert(d.metadata.namespace === 'llm', `${label}: ${id}: namespace ${d.metadata.namespace}, want the release namespace`);
    for (const [k, v] of Object.entries(d.metadata.labels || {})) {
      assert(typeof v === 'string' && v.length <= 63 && /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/.test(v), `${label}: ${id}: bad label value ${k}=${v}`);
    }
  }

  const extraEnv = new Set([
    ...(values.controlplane.extraEnv || []), ...(values.dataplane.extraEnv || []), ...((values.migrations || {}).extraEnv || []),
  ].map((e) => e.name));
  const rendered = (kind, name) => docs.find((d) => d.kind === kind && d.metadata.name === name);
  const existing = new Set([values.database.existingSecret, values.secrets.adminToken.existingSecret,
    values.secrets.masterKey.existingSecret, values.secrets.nodeToken.existingSecret].filter(Boolean));

  for (const d of docs) {
    const pod = podSpecOf(d);
    if (!pod) continue;
    const id = `${d.kind}/${d.metadata.name}`;
    // Security context: non-root, read-only root, no privilege escalation, no capabilities.
    assert(pod.securityContext && pod.securityContext.runAsNonRoot === true, `${id}: pod runAsNonRoot must be true`);
    assert(pod.securityContext.runAsUser > 0, `${id}: pod must run as a non-zero uid`);
    assert(pod.securityContext.seccompProfile && pod.securityContext.seccompProfile.type === 'RuntimeDefault', `${id}: seccompProfile RuntimeDefault`);
    assert(pod.automountServiceAccountToken === false, `${id}: no service account token needed`);
    for (const c of pod.containers) {
      const sc = c.securityContext || {};
      assert(sc.readOnlyRootFilesystem === true, `${id}/${c.name}: readOnlyRootFilesystem`);
      assert(sc.allowPrivilegeEscalation === false, `${id}/${c.name}: allowPrivilegeEscalation false`);
      assert(sc.privileged !== true, `${id}/${c.name}: privileged`);
      assert(sc.capabilities && (sc.capabilities.drop || []).includes('ALL'), `${id}/${c.name}: capabilities.drop ALL`);
      assert(!sc.capabilities.add || sc.capabilities.add.length === 0, `${id}/${c.name}: adds capabilities`);
      const override = c.name === 'dataplane' ? values.dataplane.imageTag : '';
      const expectImage = values.image.digest && !override ? `${values.image.repository}@${values.image.digest}`
        : `${values.image.repository}:${override || values.image.tag || chartYaml().appVersion}`;
      eq(c.image, expectImage, `${id}/${c.name}: image`);
      // The command must be a real binary and the variables the chart sets must be the binary's own.
      const cmd = (c.command || []).join(' ');
      const contract = CONTRACT[cmd];
      assert(contract, `${id}/${c.name}: command "${cmd}" is not one of the binaries' commands`);
      const known = new Set(Object.values(contract.flags).filter(Boolean));
      for (const e of c.env || []) {
        if (extraEnv.has(e.name)) continue;
        assert(known.has(e.name), `${id}/${c.name}: sets ${e.name}, which ${cmd} does not read`);
      }
      const env = envOf(c);
      for (const flag of contract.required) {
        const v = contract.flags[flag];
        const viaArg = (c.args || []).some((a) => a === `--${flag}` || a.startsWith(`--${flag}=`));
        assert(env[v] || viaArg, `${id}/${c.name}: ${cmd} needs --${flag} or ${v}`);
      }
      // Files named by *_FILE variables live on a mounted volume.
      const mounts = (c.volumeMounts || []);
      for (const e of c.env || []) {
        if (!/_FILE$/.test(e.name) || extraEnv.has(e.name)) continue;
        const m = mounts.find((vm) => e.value.startsWith(vm.mountPath + '/'));
        assert(m, `${id}/${c.name}: ${e.name}=${e.value} is on no mounted volume`);
        const vol = pod.volumes.find((v) => v.name === m.name);
        const file = e.value.slice(m.mountPath.length + 1);
        const items = (vol.projected ? vol.projected.sources : []).flatMap((s) => (s.secret ? s.secret.items || [] : []));
        assert(items.some((it) => it.path === file), `${id}/${c.name}: ${e.value} is not projected into volume ${vol.name}`);
      }
      // Probes reference ports the container declares.
      const portNames = new Set((c.ports || []).map((p) => p.name));
      for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
        if (c[probe]) assert(portNames.has(c[probe].httpGet.port), `${id}/${c.name}: ${probe} uses undeclared port ${c[probe].httpGet.port}`);
      }
    }
    // Every Secret the pod reads exists: rendered by the chart (a hook Secret
    // for hook pods, since ordinary objects do not exist yet when a
    // pre-install hook runs) or named in values as existing.
    const refs = [];
    for (const c of pod.containers) {
      for (const e of c.env || []) {
        if (e.valueFrom && e.valueFrom.secretKeyRef) refs.push(e.valueFrom.secretKeyRef);
      }
    }
    for (const v of pod.volumes || []) {
      if (v.secret) refs.push({ name: v.secret.secretName, keys: (v.secret.items || []).map((i) => i.key) });
      for (const s of (v.projected ? v.projected.sources : [])) {
        if (s.secret) for (const it of s.secret.items || []) refs.push({ name: s.secret.name, key: it.key });
      }
    }
    for (const ref of refs) {
      if (existing.has(ref.name)) continue;
      const sec = rendered('Secret', ref.name);
      assert(sec, `${id}: reads Secret ${ref.name}, which is neither rendered nor configured as existing`);
      assert(sec.data && sec.data[ref.key] !== undefined, `${id}: Secret ${ref.name} has no key ${ref.key}`);
      if (isHook(d)) {
        assert(isHook(sec), `${id}: hook pod reads non-hook Secret ${ref.name} (it does not exist yet at pre-install)`);
        const w = (o) => Number(o.metadata.annotations['helm.sh/hook-weight'] || 0);
        assert(w(sec) < w(d), `${id}: Secret ${ref.name} must have a lower hook weight than the Job`);
      }
    }
  }

  for (const d of findAll(docs, 'Deployment')) {
    const id = `Deployment/${d.metadata.name}`;
    const podLabels = d.spec.template.metadata.labels;
    assert(matches(d.spec.selector.matchLabels, podLabels), `${id}: selector does not match pod labels`);
    for (const c of d.spec.template.spec.containers) {
      assert(c.livenessProbe && c.livenessProbe.httpGet.path === '/healthz', `${id}/${c.name}: liveness probe on /healthz`);
      assert(c.readinessProbe && c.readinessProbe.httpGet.path === '/readyz', `${id}/${c.name}: readiness probe on /readyz`);
      assert(c.startupProbe && c.startupProbe.httpGet.path === '/healthz', `${id}/${c.name}: startup probe on /healthz`);
      assert(c.resources && c.resources.requests && c.resources.requests.memory, `${id}/${c.name}: memory request`);
    }
  }
  // Services select pods and target ports those pods declare.
  const deployments = findAll(docs, 'Deployment');
  for (const s of findAll(docs, 'Service')) {
    const targets = deployments.filter((d) => matches(s.spec.selector, d.spec.template.metadata.labels));
    assert(targets.length === 1, `Service/${s.metadata.name}: selects ${targets.length} Deployments, want 1`);
    const names = new Set(targets[0].spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)));
    for (const p of s.spec.ports) assert(names.has(p.targetPort), `Service/${s.metadata.name}: targetPort ${p.targetPort} not declared by the pods`);
  }
  for (const pdb of findAll(docs, 'PodDisruptionBudget')) {
    const targets = deployments.filter((d) => matches(pdb.spec.selector.matchLabels, d.spec.template.metadata.labels));
    assert(targets.length === 1, `PodDisruptionBudget/${pdb.metadata.name}: selects ${targets.length} Deployments`);
    assert((pdb.spec.minAvailable === undefined) !== (pdb.spec.maxUnavailable === undefined), `PodDisruptionBudget/${pdb.metadata.name}: exactly one of minAvailable/maxUnavailable`);
  }
  for (const hpa of findAll(docs, 'HorizontalPodAutoscaler')) {
    const target = rendered(hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name);
    assert(target, `HPA/${hpa.metadata.name}: scale target not rendered`);
    assert(target.spec.replicas === undefined, `HPA/${hpa.metadata.name}: the target Deployment must not set replicas (upgrades would reset the HPA's count)`);
    assert(hpa.spec.minReplicas <= hpa.spec.maxReplicas, `HPA/${hpa.metadata.name}: min > max`);
    const cpu = hpa.spec.metrics.find((m) => m.type === 'Resource' && m.resource.name === 'cpu');
    assert(cpu && cpu.resource.target.type === 'Utilization', `HPA/${hpa.metadata.name}: CPU utilization metric`);
    for (const c of target.spec.template.spec.containers) {
      assert(c.resources.requests && c.resources.requests.cpu, `HPA/${hpa.metadata.name}: CPU utilization needs a CPU request on ${c.name}`);
    }
  }
  for (const ing of findAll(docs, 'Ingress')) {
    for (const rule of ing.spec.rules) {
      for (const p of rule.http.paths) {
        const svc = rendered('Service', p.backend.service.name);
        assert(svc, `Ingress/${ing.metadata.name}: backend Service ${p.backend.service.name} not rendered`);
        assert(svc.spec.ports.some((sp) => sp.name === p.backend.service.port.name), `Ingress/${ing.metadata.name}: backend port ${p.backend.service.port.name} missing`);
      }
    }
  }
  for (const sm of findAll(docs, 'ServiceMonitor')) {
    const svcs = findAll(docs, 'Service').filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    assert(svcs.length === 1, `ServiceMonitor/${sm.metadata.name}: selects ${svcs.length} Services, want 1`);
    for (const ep of sm.spec.endpoints) {
      assert(svcs[0].spec.ports.some((p) => p.name === ep.port), `ServiceMonitor/${sm.metadata.name}: port ${ep.port} not on Service ${svcs[0].metadata.name}`);
      eq(ep.path, '/metrics', `ServiceMonitor/${sm.metadata.name}: path`);
    }
  }
  for (const np of findAll(docs, 'NetworkPolicy')) {
    const pods = docs.filter((d) => podSpecOf(d) && matches(np.spec.podSelector.matchLabels, d.spec.template.metadata.labels));
    assert(pods.length === 1, `NetworkPolicy/${np.metadata.name}: selects ${pods.length} workloads, want 1`);
    const names = new Set(pods[0].spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name)));
    for (const rule of np.spec.ingress || []) {
      for (const p of rule.ports || []) assert(names.has(p.port), `NetworkPolicy/${np.metadata.name}: port ${p.port} not declared by the pods`);
    }
  }
}

function dataplaneChecks(docs, values) {
  const dp = findOne(docs, 'Deployment', '-dataplane');
  const pod = dp.spec.template.spec;
  const c = pod.containers[0];
  const env = envOf(c);
  const drain = Number(env.SLUICE_DRAIN_TIMEOUT.value);
  const pre = c.lifecycle && c.lifecycle.preStop;
  assert(pre && pre.exec && pre.exec.command[0] === 'sleep', 'data plane: preStop sleep hook');
  const sleep = Number(pre.exec.command[1]);
  eq(drain, values.dataplane.drainTimeoutSeconds, 'data plane: drain timeout from values');
  assert(pod.terminationGracePeriodSeconds > sleep + drain, `data plane: grace period ${pod.terminationGracePeriodSeconds}s must exceed preStop ${sleep}s + drain ${drain}s`);
  assert(drain >= 30, 'data plane: drain timeout long enough for LLM streams');
  // Snapshot cache and spool are on emptyDir volumes.
  for (const [v, isFile] of [['SLUICE_SNAPSHOT_CACHE', true], ['SLUICE_SPOOL_DIR', false]]) {
    const p = env[v].value;
    const m = c.volumeMounts.find((vm) => (isFile ? path.dirname(p) === vm.mountPath : p === vm.mountPath));
    assert(m, `data plane: ${v}=${p} is not on a mounted volume`);
    const vol = pod.volumes.find((x) => x.name === m.name);
    assert(vol.emptyDir, `data plane: ${v} volume ${vol.name} must be an emptyDir`);
  }
  eq(env.SLUICE_NODE_ID.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'data plane: node id is the pod name');
  eq(portOf(env.SLUICE_LISTEN.value), values.dataplane.ports.http, 'data plane: API port');
  eq(portOf(env.SLUICE_ADMIN_LISTEN.value), values.dataplane.ports.admin, 'data plane: admin port');
  const cpAddr = env.SLUICE_CONTROLPLANE.value;
  if (values.dataplane.controlplaneAddress) {
    eq(cpAddr, values.dataplane.controlplaneAddress, 'data plane: control plane address override');
  } else {
    const cpSvc = findOne(docs, 'Service', '-controlplane');
    eq(cpAddr, `${cpSvc.metadata.name}.llm.svc:${cpSvc.spec.ports.find((p) => p.name === 'grpc').port}`, 'data plane: control plane address');
  }
  if (values.dataplane.threads > 0) {
    eq(env.SLUICE_THREADS.value, String(values.dataplane.threads), 'data plane: threads');
  } else {
    eq(env.SLUICE_THREADS.valueFrom.resourceFieldRef.resource, 'limits.cpu', 'data plane: threads follow the CPU limit');
  }
  // Topology spread: every constraint selects the data plane pods.
  for (const t of pod.topologySpreadConstraints || []) {
    assert(matches(t.labelSelector.matchLabels, dp.spec.template.metadata.labels), 'data plane: topology spread labelSelector must match its pods');
  }
  // The data plane never sees the admin token or the master key.
  const files = pod.volumes.flatMap((v) => (v.projected ? v.projected.sources : [])).flatMap((s) => (s.secret ? s.secret.items : []).map((i) => i.path));
  eq(files, ['node-token'], 'data plane: only the node token is mounted');
  return { dp, pod, c, env };
}

function controlplaneChecks(docs, values) {
  const cp = findOne(docs, 'Deployment', '-controlplane');
  const c = cp.spec.template.spec.containers[0];
  const env = envOf(c);
  eq(c.command, ['sluice-controlplane', 'serve'], 'control plane: command');
  assert(env.SLUICE_DATABASE_URL.valueFrom.secretKeyRef, 'control plane: database URL from a Secret');
  eq(cp.spec.replicas, values.controlplane.replicaCount, 'control plane: replicas');
  eq(cp.spec.strategy.type, 'RollingUpdate', 'control plane: rolling updates');
  const svc = findOne(docs, 'Service', '-controlplane');
  eq(svc.spec.ports.map((p) => [p.name, p.port]), [['grpc', values.controlplane.ports.grpc], ['http', values.controlplane.ports.http]], 'control plane Service ports');
  eq(portOf(env.SLUICE_GRPC_LISTEN.value), values.controlplane.ports.grpc, 'control plane: gRPC listen port');
  eq(portOf(env.SLUICE_HTTP_LISTEN.value), values.controlplane.ports.http, 'control plane: HTTP listen port');
  return { cp, c, env };
}

function migrationChecks(docs, values) {
  const jobs = findAll(docs, 'Job');
  if (!values.migrations.enabled) { eq(jobs.length, 0, 'migration Job when disabled'); return null; }
  eq(jobs.length, 1, 'one migration Job');
  const job = jobs[0];
  const ann = job.metadata.annotations;
  eq(ann['helm.sh/hook'].split(',').sort(), ['pre-install', 'pre-upgrade'], 'migration Job hook events');
  assert(ann['helm.sh/hook-delete-policy'].includes('before-hook-creation'), 'migration Job replaced on the next upgrade');
  const pod = job.spec.template.spec;
  eq(pod.restartPolicy, 'Never', 'migration Job restartPolicy');
  eq(pod.containers[0].command, ['sluice-controlplane', 'migrate'], 'migration Job command');
  assert(job.spec.backoffLimit >= 1, 'migration Job retries');
  assert(pod.serviceAccountName === undefined || pod.serviceAccountName === values.migrations.serviceAccountName,
    'migration Job must not use the chart ServiceAccount (it does not exist at pre-install)');
  return job;
}

// ---------------------------------------------------------------- tests
const schema = JSON.parse(fs.readFileSync(path.join(CHART, 'values.schema.json'), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateValues = ajv.compile(schema);
const schemaErrors = () => (validateValues.errors || []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params && e.params.additionalProperty ? ' ' + e.params.additionalProperty : ''}`);

function chartYaml() { return YAML.parse(fs.readFileSync(path.join(CHART, 'Chart.yaml'), 'utf8')); }

test('chart: Chart.yaml is a v2 application chart with SemVer version and kubeVersion', () => {
  const c = chartYaml();
  eq(c.apiVersion, 'v2', 'apiVersion');
  eq(c.name, 'sluice', 'name');
  assert(/^\d+\.\d+\.\d+$/.test(c.version), 'version is SemVer');
  assert(c.appVersion, 'appVersion');
  assert(c.kubeVersion, 'kubeVersion constraint');
});

test('chart: only Helm template files and documented values', () => {
  const files = fs.readdirSync(path.join(CHART, 'templates'));
  for (const f of files) assert(/\.(yaml|tpl)$/.test(f) || f === 'NOTES.txt', `unexpected template file ${f}`);
  // Every key in values.yaml is documented: a comment above it, above the
  // group of keys it starts (no blank line between), or on its parent.
  const lines = fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8').split('\n');
  const indentOf = (l) => /^( *)/.exec(l)[1].length;
  const memo = {};
  const documented = (i) => {
    if (i in memo) return memo[i];
    const ind = indentOf(lines[i]);
    let res = false;
    for (let j = i - 1; j >= 0; j--) {
      const l = lines[j];
      if (l.trim() === '') break;
      if (/^\s*#/.test(l)) { if (indentOf(l) <= ind) { res = true; break; } continue; }
      if (indentOf(l) < ind && /^\s*[A-Za-z]/.test(l)) { res = documented(j); break; }
    }
    memo[i] = res;
    return res;
  };
  const undocumented = [];
  lines.forEach((l, i) => {
    const m = /^( *)([A-Za-z][\w]*):/.exec(l);
    if (m && !documented(i)) undocumented.push(`${i + 1}: ${m[2]}`);
  });
  eq(undocumented, [], 'values without documentation');
});

test('schema: values.yaml defaults satisfy values.schema.json', () => {
  const defaults = YAML.parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));
  assert(validateValues(defaults), `defaults rejected:\n${schemaErrors().join('\n')}`);
});

test('render: default values fail with a message asking for the database', () => {
  const r = render('defaults', []);
  assert(r.status !== 0, 'rendering the defaults must fail: the chart runs no PostgreSQL');
  assert(/database\.url/.test(r.stderr) && /existingSecret/.test(r.stderr), `unhelpful error: ${r.stderr}`);
});

const goodCases = fs.readdirSync(path.join(CASES, 'values')).filter((f) => f.endsWith('.yaml')).sort();
const rendered = {};
for (const f of goodCases) {
  const name = path.basename(f, '.yaml');
  test(`render ${name}: renders, parses as YAML, passes values schema and Kubernetes schema (strict)`, () => {
    const r = render(name, [path.join(CASES, 'values', f)]);
    assert(r.status === 0, `render failed: ${r.stderr}`);
    const text = fs.readFileSync(path.join(r.out, 'manifests.yaml'), 'utf8');
    for (const bad of ['<no value>', '%!', 'map[', 'e+0', '<nil>']) assert(!text.includes(bad), `rendered output contains "${bad}"`);
    const values = JSON.parse(fs.readFileSync(path.join(r.out, 'values.json'), 'utf8'));
    assert(validateValues(values), `values rejected by values.schema.json:\n${schemaErrors().join('\n')}`);
    const docs = loadDocs(path.join(r.out, 'manifests.yaml'));
    assert(docs.length > 5, 'too few objects rendered');
    checkInvariants(docs, values, name);
    const notes = fs.readFileSync(path.join(r.out, 'NOTES.txt'), 'utf8');
    assert(notes.includes('sluicectl') && !notes.includes('<no value>'), 'NOTES.txt');
    rendered[name] = { docs, values, out: r.out };
  });
  test(`render ${name}: control plane, data plane, migrations`, () => {
    const { docs, values } = rendered[name] || {};
    assert(docs, 'not rendered');
    controlplaneChecks(docs, values);
    dataplaneChecks(docs, values);
    migrationChecks(docs, values);
  });
}

test('render minimal: generated credentials, hook Secret, HPA, PDBs, no optional objects', () => {
  const { docs } = rendered.minimal;
  const sec = findOne(docs, 'Secret', 'sluice-test');
  assert(!isHook(sec), 'chart Secret is an ordinary object');
  eq(sec.metadata.annotations['helm.sh/resource-policy'], 'keep', 'chart Secret survives uninstall');
  eq(Object.keys(sec.data).sort(), ['admin-token', 'database-url', 'master-key', 'node-token'], 'chart Secret keys');
  assert(/^[0-9a-f]{64}$/.test(b64(sec.data['master-key'])), 'generated master key is 64 hex characters');
  assert(b64(sec.data['admin-token']).length >= 32 && b64(sec.data['node-token']).length >= 32, 'generated tokens are long');
  assert(b64(sec.data['admin-token']) !== b64(sec.data['node-token']), 'admin and node tokens differ');
  eq(b64(sec.data['database-url']), 'postgresql://sluice:s3cret@postgres.db.svc:5432/sluice?sslmode=require', 'database URL');
  const hookSecret = findOne(docs, 'Secret', '-migrations');
  eq(hookSecret.metadata.annotations['helm.sh/hook'], 'pre-install,pre-upgrade', 'hook Secret events');
  eq(findAll(docs, 'HorizontalPodAutoscaler').length, 1, 'HPA');
  eq(findAll(docs, 'PodDisruptionBudget').length, 2, 'PDBs for control plane and data plane');
  const pdb = findOne(docs, 'PodDisruptionBudget', '-dataplane');
  eq(pdb.spec.maxUnavailable, 1, 'data plane PDB');
  const hpa = findAll(docs, 'HorizontalPodAutoscaler')[0];
  eq([hpa.spec.minReplicas, hpa.spec.maxReplicas], [2, 20], 'HPA bounds');
  assert(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds >= 60, 'HPA scales down slowly');
  for (const k of ['Ingress', 'ServiceMonitor', 'PrometheusRule', 'NetworkPolicy']) eq(findAll(docs, k).length, 0, `${k} off by default`);
  const { pod } = dataplaneChecks(docs, rendered.minimal.values);
  const keys = (pod.topologySpreadConstraints || []).map((t) => t.topologyKey);
  assert(keys.includes('topology.kubernetes.io/zone'), 'data planes spread across zones');
  eq(pod.terminationGracePeriodSeconds, 150, 'default grace period');
  const sa = findAll(docs, 'ServiceAccount');
  eq(sa.length, 1, 'ServiceAccount created');
  eq(sa[0].automountServiceAccountToken, false, 'ServiceAccount does not mount tokens');
  const dp = findOne(docs, 'Deployment', '-dataplane');
  eq(dp.spec.template.spec.serviceAccountName, sa[0].metadata.name, 'pods use the ServiceAccount');
  const vol = dp.spec.template.spec.volumes.find((v) => v.name === 'secrets');
  eq(vol.projected.defaultMode, 0o440, 'secret files mode 0440');
});

test('render minimal: generated secrets change per render, values-given ones do not', () => {
  const a = render('minimal-again', [path.join(CASES, 'values/minimal.yaml')]);
  assert(a.status === 0, a.stderr);
  const s1 = findOne(rendered.minimal.docs, 'Secret', 'sluice-test');
  const s2 = findOne(loadDocs(path.join(a.out, 'manifests.yaml')), 'Secret', 'sluice-test');
  assert(s1.data['master-key'] !== s2.data['master-key'], 'master key is random (lookup keeps it on a real upgrade)');
  eq(s1.data['database-url'], s2.data['database-url'], 'database URL stable');
});

test('render production: existing Secrets only, digest, Ingress+TLS, custom metric, monitoring, NetworkPolicy', () => {
  const { docs, values } = rendered.production;
  eq(findAll(docs, 'Secret').length, 0, 'no Secret rendered when every credential is existing');
  const job = migrationChecks(docs, values);
  eq(envOf(job.spec.template.spec.containers[0]).SLUICE_DATABASE_URL.valueFrom.secretKeyRef, { name: 'sluice-db', key: 'url' }, 'Job reads the existing database Secret');
  eq(job.spec.template.spec.serviceAccountName, 'sluice-migrations', 'Job service account');
  eq(job.metadata.annotations['helm.sh/hook-delete-policy'], 'before-hook-creation', 'hook delete policy from values');
  const { cp, c } = controlplaneChecks(docs, values);
  eq(cp.metadata.name, 'gateway-controlplane', 'fullnameOverride');
  eq(c.image, 'registry.example.com/platform/sluice@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'digest');
  const sources = cp.spec.template.spec.volumes.find((v) => v.name === 'secrets').projected.sources;
  eq(sources.map((s) => [s.secret.name, s.secret.items[0].key, s.secret.items[0].path]),
    [['sluice-admin', 'token', 'admin-token'], ['sluice-master-key', 'key', 'master-key'], ['sluice-node-token', 'token', 'node-token']], 'existing Secrets projected');
  assert(cp.spec.template.spec.containers[0].volumeMounts.some((m) => m.name === 'db-ca'), 'extra volume mount');
  eq(cp.spec.template.spec.imagePullSecrets, [{ name: 'regcred' }], 'imagePullSecrets');
  const hpa = findAll(docs, 'HorizontalPodAutoscaler')[0];
  const pods = hpa.spec.metrics.find((m) => m.type === 'Pods');
  assert(pods && pods.pods.metric.name === 'sluice_dataplane_inflight_requests' && pods.pods.target.averageValue === '250', 'custom metric');
  const pdb = findOne(docs, 'PodDisruptionBudget', '-dataplane');
  eq([pdb.spec.minAvailable, pdb.spec.maxUnavailable], ['50%', undefined], 'null in values removes the default maxUnavailable');
  const ing = findAll(docs, 'Ingress')[0];
  eq(ing.spec.ingressClassName, 'nginx', 'ingress class');
  eq(ing.spec.tls[0].secretName, 'llm-example-com-tls', 'ingress TLS');
  eq(ing.spec.rules.map((r) => [r.host, r.http.paths[0].path]), [['llm.example.com', '/v1'], ['llm-internal.example.com', '/']], 'ingress rules');
  const svc = findOne(docs, 'Service', '-dataplane');
  eq([svc.spec.type, svc.spec.externalTrafficPolicy, svc.spec.ports[0].port], ['LoadBalancer', 'Local', 443], 'API Service');
  const sms = findAll(docs, 'ServiceMonitor');
  eq(sms.length, 2, 'ServiceMonitors for both planes');
  for (const sm of sms) eq(sm.metadata.labels.release, 'kube-prometheus-stack', 'ServiceMonitor selector label');
  const apiSvcPicked = sms.some((sm) => matches(sm.spec.selector.matchLabels, svc.metadata.labels));
  assert(!apiSvcPicked, 'the public API Service is not scraped');
  const nps = findAll(docs, 'NetworkPolicy');
  eq(nps.length, 3, 'NetworkPolicies');
  const cpNp = findOne(docs, 'NetworkPolicy', '-controlplane');
  const grpcRule = cpNp.spec.ingress.find((r) => r.ports.some((p) => p.port === 'grpc'));
  const dpLabels = findOne(docs, 'Deployment', '-dataplane').spec.template.metadata.labels;
  assert(grpcRule.from.some((f) => f.podSelector && matches(f.podSelector.matchLabels, dpLabels)), 'data planes may reach the Sync API');
  assert(grpcRule.from.some((f) => f.namespaceSelector && f.namespaceSelector.matchLabels['kubernetes.io/metadata.name'] === 'ci'), 'admins may reach the Admin API');
  eq(grpcRule.from.length, 2, 'nobody else reaches the gRPC port');
  const dpNp = findOne(docs, 'NetworkPolicy', '-dataplane');
  const apiRule = dpNp.spec.ingress.find((r) => r.ports.some((p) => p.port === 'http'));
  eq(apiRule.from, values.networkPolicy.apiFrom, 'API reachable from apiFrom');
  const { pod, env } = dataplaneChecks(docs, values);
  eq(pod.terminationGracePeriodSeconds, 330, 'grace period');
  eq(env.SLUICE_DRAIN_TIMEOUT.value, '300', 'drain timeout');
  eq(pod.topologySpreadConstraints.map((t) => t.whenUnsatisfiable), ['DoNotSchedule'], 'spread constraints from values');
  assert(pod.affinity.nodeAffinity, 'affinity');
  eq(cp.spec.template.spec.priorityClassName, 'high-priority', 'priorityClassName');
});

test('render production: the PrometheusRule holds files/prometheus-rules.yaml verbatim', () => {
  const { docs, out } = rendered.production;
  const prs = findAll(docs, 'PrometheusRule');
  eq(prs.length, 1, 'one PrometheusRule');
  eq(prs[0].metadata.labels.release, 'kube-prometheus-stack', 'ruleSelector label from values');
  eq(Object.keys(prs[0].spec), ['groups'], 'spec');
  eq(prs[0].spec.groups, loadDocs(RULES)[0].groups, 'rendered rule groups equal the rule file');
  // Helm must not have rendered the Prometheus templates in the annotations.
  const text = fs.readFileSync(path.join(out, 'manifests.yaml'), 'utf8');
  assert(text.includes('{{ $labels.provider }}') && text.includes('{{ $value | humanizePercentage }}'),
    'annotation templates reach Prometheus as written');
});

test('render fixed-replicas: no HPA, fixed replicas, no PDB/Job/ServiceAccount, explicit threads and ports', () => {
  const { docs, values } = rendered['fixed-replicas'];
  eq(findAll(docs, 'HorizontalPodAutoscaler').length, 0, 'no HPA');
  const dp = findOne(docs, 'Deployment', '-dataplane');
  eq(dp.spec.replicas, 3, 'data plane replicas');
  eq(dp.metadata.name, 'sluice-test-gw-dataplane', 'nameOverride');
  eq(dp.spec.template.spec.containers[0].image, 'sluice:0.0.9', 'data plane image tag override');
  eq(findOne(docs, 'Deployment', '-controlplane').spec.template.spec.containers[0].image, 'sluice:0.1.0', 'control plane keeps the chart version');
  eq(findAll(docs, 'PodDisruptionBudget').length, 0, 'no PDB (disabled, and one control plane replica)');
  eq(findAll(docs, 'Job').length, 0, 'no migration Job');
  eq(findAll(docs, 'ServiceAccount').length, 0, 'no ServiceAccount');
  eq(dp.spec.template.spec.serviceAccountName, 'default', 'default ServiceAccount');
  eq(dp.spec.template.spec.topologySpreadConstraints, undefined, 'no spread constraints');
  const sec = findOne(docs, 'Secret', 'sluice-test-gw');
  eq(b64(sec.data['admin-token']), 'admin-token-from-values', 'admin token from values');
  eq(b64(sec.data['master-key']), values.secrets.masterKey.value, 'master key from values');
  const svc = findOne(docs, 'Service', '-dataplane');
  eq([svc.spec.type, svc.spec.ports[0].port, svc.spec.externalTrafficPolicy], ['NodePort', 8000, undefined], 'NodePort Service');
  const np = findOne(docs, 'NetworkPolicy', '-controlplane');
  const grpcRule = np.spec.ingress.find((r) => r.ports.some((p) => p.port === 'grpc'));
  eq(grpcRule.from.length, 1, 'with adminFrom empty only data planes reach gRPC');
  const metricsRule = np.spec.ingress.find((r) => r.ports.some((p) => p.port === 'http'));
  eq(metricsRule.from, undefined, 'metrics open when metricsFrom is empty');
});

test('render: upgrade render matches install render (hooks included)', () => {
  const r = render('minimal-upgrade', [path.join(CASES, 'values/minimal.yaml')], ['-upgrade']);
  assert(r.status === 0, r.stderr);
  const docs = loadDocs(path.join(r.out, 'manifests.yaml'));
  const ids = (ds) => ds.map((d) => `${d.kind}/${d.metadata.name}`).sort();
  eq(ids(docs), ids(rendered.minimal.docs), 'same objects on upgrade');
});

test('render: -f files merge in order (a URL from one and an existing Secret from the next is refused)', () => {
  const r = render('monitoring-only', [path.join(CASES, 'values/minimal.yaml'), path.join(CASES, 'values/production.yaml')]);
  assert(r.status !== 0 && /not both/.test(r.stderr), 'url + existingSecret across -f files must fail (later files merge over earlier ones)');
});

for (const f of fs.readdirSync(path.join(CASES, 'render-fail')).filter((x) => x.endsWith('.yaml')).sort()) {
  const file = path.join(CASES, 'render-fail', f);
  const text = fs.readFileSync(file, 'utf8');
  const expect = /^# expect: (.*)$/m.exec(text)[1];
  const kube = /^# kube-version: (.*)$/m.exec(text);
  test(`render-fail ${path.basename(f, '.yaml')}: refused with "${expect}"`, () => {
    const r = render(`fail-${f}`, [file], kube ? ['-kube-version', kube[1]] : []);
    assert(r.status !== 0, 'rendering should fail');
    assert(r.stderr.includes(expect), `stderr does not mention "${expect}":\n${r.stderr}`);
    // These are guards in templates; the values themselves are well-typed.
    const v = render(`fail-values-${f}`, [file], ['-values-only']);
    assert(v.status === 0, v.stderr);
    const merged = JSON.parse(fs.readFileSync(path.join(v.out, 'values.json'), 'utf8'));
    assert(validateValues(merged), `schema should accept these values, it said:\n${schemaErrors().join('\n')}`);
  });
}

for (const f of fs.readdirSync(path.join(CASES, 'schema-fail')).filter((x) => x.endsWith('.yaml')).sort()) {
  const file = path.join(CASES, 'schema-fail', f);
  const expect = /^# expect: (.*)$/m.exec(fs.readFileSync(file, 'utf8'))[1];
  test(`schema-fail ${path.basename(f, '.yaml')}: values.schema.json rejects it (${expect})`, () => {
    // Helm validates the coalesced values before rendering; so do we.
    const r = render(`schema-${f}`, [file], ['-values-only']);
    const values = r.status === 0 ? JSON.parse(fs.readFileSync(path.join(r.out, 'values.json'), 'utf8')) : null;
    assert(values, `could not coalesce values: ${r.stderr}`);
    assert(!validateValues(values), 'schema accepted bad values');
    const errs = schemaErrors().join('\n');
    const [p, word] = expect.split(' ');
    if (p.startsWith('/')) assert(errs.includes(p), `no error at ${p}:\n${errs}`);
    else assert(errs.includes(word), `no ${p} error for ${word}:\n${errs}`);
  });
}

test('validator self-test: unknown fields and wrong types are caught', () => {
  const d = {
    apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' },
    spec: { replicas: '2', selector: { matchLabels: { a: 'b' } }, template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i', readinessProb: {} }] } } },
  };
  const problems = k8sValidate(d).join('\n');
  assert(/replicas/.test(problems), `wrong type not caught:\n${problems}`);
  assert(/readinessProb/.test(problems), `unknown field not caught:\n${problems}`);
  const sm = {
    apiVersion: 'monitoring.coreos.com/v1', kind: 'ServiceMonitor', metadata: { name: 'x' },
    spec: { selector: {}, endpoints: [{ port: 'http', intervall: '30s' }] },
  };
  assert(/intervall/.test(k8sValidate(sm).join('\n')), 'unknown ServiceMonitor field not caught');
  const pr = {
    apiVersion: 'monitoring.coreos.com/v1', kind: 'PrometheusRule', metadata: { name: 'x' },
    spec: { groups: [{ name: 'g', rules: [{ alert: 'A', expr: 'up == 0', anotations: {} }] }] },
  };
  assert(/anotations/.test(k8sValidate(pr).join('\n')), 'unknown PrometheusRule field not caught');
});

// ---------------------------------------------------------------- alerting rules
function promtool(...argv) {
  if (!args.promtool) throw new CheckError('promtool not available (Debian package prometheus)');
  const r = spawnSync(args.promtool, argv, { encoding: 'utf8' });
  assert(r.status === 0, `promtool ${argv.join(' ')}:\n${r.stdout}${r.stderr}`);
}

test('prometheus rules: promtool check rules deploy/helm/sluice/files/prometheus-rules.yaml', () => {
  promtool('check', 'rules', RULES);
});

test('prometheus rules: promtool test rules tests/deploy/prometheus-rules.test.yaml', () => {
  promtool('test', 'rules', RULE_TESTS);
});

test('prometheus rules: every alert has for, severity, summary, description; fires in a test; is checked quiet on a healthy and an idle gateway', () => {
  const alerts = YAML.parse(fs.readFileSync(RULES, 'utf8')).groups.flatMap((g) => g.rules);
  const names = alerts.map((r) => r.alert);
  assert(names.every(Boolean), 'only alerting rules');
  eq(names.length, new Set(names).size, 'alert names are unique');
  for (const r of alerts) {
    assert(/^\d+m$/.test(r.for), `${r.alert}: for`);
    assert(['critical', 'warning'].includes(r.labels.severity), `${r.alert}: severity`);
    assert(r.annotations.summary && r.annotations.description, `${r.alert}: summary and description`);
  }
  const suite = YAML.parse(fs.readFileSync(RULE_TESTS, 'utf8'));
  eq(suite.rule_files.map((f) => path.resolve(path.dirname(RULE_TESTS), f)), [RULES], 'the tests load the shipped file');
  const cases = (pred) => new Set(suite.tests.flatMap((t) => (t.alert_rule_test || [])
    .filter((c) => pred(t, c)).map((c) => c.alertname)));
  const fires = cases((t, c) => (c.exp_alerts || []).length > 0);
  eq(names.filter((n) => !fires.has(n)), [], 'alerts no test makes fire');
  for (const quiet of ['healthy gateway under traffic', 'idle gateway']) {
    eq(suite.tests.filter((t) => t.name === quiet).length, 1, `test "${quiet}"`);
    const checked = cases((t, c) => t.name === quiet && (c.exp_alerts || []).length === 0);
    eq(names.filter((n) => !checked.has(n)), [], `alerts not checked quiet in "${quiet}"`);
  }
});

// ---------------------------------------------------------------- yamllint
test('yamllint: chart values, Chart.yaml, alerting rules and their tests, compose file and rendered manifests', () => {
  if (!args.yamllint) throw new CheckError('yamllint not available');
  const files = [path.join(CHART, 'values.yaml'), path.join(CHART, 'Chart.yaml'), RULES, RULE_TESTS, COMPOSE,
    ...Object.values(rendered).map((r) => path.join(r.out, 'manifests.yaml')),
    ...fs.readdirSync(path.join(CASES, 'values')).map((f) => path.join(CASES, 'values', f))];
  const r = spawnSync(args.yamllint, ['-f', 'parsable', '-c', path.join(__dirname, 'yamllint.yaml'), ...files], { encoding: 'utf8' });
  assert(r.status === 0, `yamllint:\n${r.stdout}${r.stderr}`);
});

// ---------------------------------------------------------------- compose
function parseCommand(cmd) {
  // -> { bin, sub, flags: {name: value} }
  const argv = [...cmd];
  const bin = argv.shift();
  let sub = null;
  if (bin === 'sluice-controlplane') sub = argv.shift();
  const flags = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eqi = a.indexOf('=');
      if (eqi > 0) flags[a.slice(2, eqi)] = a.slice(eqi + 1);
      else flags[a.slice(2)] = argv[++i];
    } else positional.push(a);
  }
  return { bin, sub, flags, positional, key: sub ? `${bin} ${sub}` : bin };
}

let compose;
test('compose: parses, services present, every port bound to 127.0.0.1 and unique', () => {
  const docs = parseYaml11(fs.readFileSync(COMPOSE, 'utf8'));
  eq(docs.length, 1, 'one document');
  assert(!docs[0].errors.length, docs[0].errors.join('; '));
  compose = docs[0].toJS();
  const names = Object.keys(compose.services).sort();
  for (const n of ['postgres', 'migrate', 'controlplane', 'dataplane-1', 'dataplane-2', 'mockllm']) assert(names.includes(n), `service ${n} missing`);
  const hostPorts = new Set();
  for (const [name, s] of Object.entries(compose.services)) {
    for (const p of s.ports || []) {
      const m = /^127\.0\.0\.1:(\d+):(\d+)$/.exec(String(p));
      assert(m, `${name}: port "${p}" must be published on 127.0.0.1 only`);
      assert(!hostPorts.has(m[1]), `${name}: host port ${m[1]} used twice`);
      hostPorts.add(m[1]);
    }
    for (const v of s.volumes || []) {
      const src = String(v).split(':')[0];
      if (!src.startsWith('.') && !src.startsWith('/')) assert(compose.volumes && src in compose.volumes, `${name}: volume ${src} not declared`);
    }
  }
});

function sluiceCommand(s) {
  const cmd = [...(s.entrypoint || []), ...(s.command || [])];
  if (!BINARIES.includes(cmd[0])) return null;
  return parseCommand(cmd);
}

test('compose: every Sluice command uses the binaries\' flags, with the required ones', () => {
  let seen = 0;
  for (const [name, s] of Object.entries(compose.services)) {
    const c = sluiceCommand(s);
    if (!c) continue;
    seen++;
    eq(s.image, '${SLUICE_IMAGE:-sluice:dev}', `${name}: image`);
    assert(s.build && s.build.dockerfile === 'deploy/docker/Dockerfile', `${name}: builds from deploy/docker/Dockerfile`);
    const contract = CONTRACT[c.key];
    assert(contract, `${name}: unknown command ${c.key}`);
    for (const f of Object.keys(c.flags)) assert(f in contract.flags, `${name}: ${c.key} has no --${f}`);
    const env = s.environment || {};
    for (const f of contract.required) assert(f in c.flags || env[contract.flags[f]], `${name}: ${c.key} needs --${f}`);
    for (const v of Object.keys(env)) assert(Object.values(contract.flags).includes(v), `${name}: ${c.key} does not read ${v}`);
  }
  assert(seen >= 5, 'expected at least five Sluice services');
});

test('compose: start order and health checks', () => {
  const S = compose.services;
  const dep = (n, on) => (S[n].depends_on || {})[on] && S[n].depends_on[on].condition;
  eq(dep('migrate', 'postgres'), 'service_healthy', 'migrate waits for a healthy PostgreSQL');
  eq(dep('controlplane', 'migrate'), 'service_completed_successfully', 'control plane waits for migrations');
  for (const dp of ['dataplane-1', 'dataplane-2']) eq(dep(dp, 'controlplane'), 'service_healthy', `${dp} waits for the control plane`);
  for (const [name, s] of Object.entries(S)) {
    for (const [on, d] of Object.entries(s.depends_on || {})) {
      assert(S[on], `${name}: depends on unknown service ${on}`);
      if (d.condition === 'service_healthy') {
        assert(S[on].healthcheck && !S[on].healthcheck.disable && S[on].healthcheck.test, `${name}: waits for ${on} to be healthy, but ${on} has no health check`);
      }
      if (d.condition === 'service_completed_successfully') eq(S[on].restart, 'no', `${on} is one-shot`);
    }
  }
  // No cycles.
  const visiting = new Set();
  const done = new Set();
  const visit = (n, trail) => {
    assert(!visiting.has(n), `depends_on cycle: ${[...trail, n].join(' -> ')}`);
    if (done.has(n)) return;
    visiting.add(n);
    for (const on of Object.keys(S[n].depends_on || {})) visit(on, [...trail, n]);
    visiting.delete(n);
    done.add(n);
  };
  Object.keys(S).forEach((n) => visit(n, []));
  // Long-running Sluice services check their own health port.
  const healthPort = { 'sluice-controlplane serve': 'http-listen', 'sluice-dataplane': 'admin-listen', 'sluice-mockllm': 'listen' };
  for (const [name, s] of Object.entries(S)) {
    const c = sluiceCommand(s);
    if (!c || !healthPort[c.key]) continue;
    const t = s.healthcheck && s.healthcheck.test;
    assert(t && t[0] === 'CMD' && t[1] === 'sluice-healthcheck', `${name}: health check must use sluice-healthcheck`);
    eq(portOf(t[2]), portOf(c.flags[healthPort[c.key]]), `${name}: health check port`);
    assert(['/healthz', '/readyz'].includes(t[3]), `${name}: health check path`);
  }
  assert(S.postgres.healthcheck.test.includes('pg_isready'), 'PostgreSQL health check uses pg_isready');
});

test('compose: wiring between services (database, control plane address, tokens, ports)', () => {
  const S = compose.services;
  const cp = sluiceCommand(S.controlplane);
  const mig = sluiceCommand(S.migrate);
  eq(mig.flags['database-url'], cp.flags['database-url'], 'migrate and control plane use one database');
  const u = new URL(cp.flags['database-url']);
  eq(u.hostname, 'postgres', 'database host is the postgres service');
  const pe = S.postgres.environment;
  eq([decodeURIComponent(u.username), decodeURIComponent(u.password), u.pathname.slice(1)], [pe.POSTGRES_USER, pe.POSTGRES_PASSWORD, pe.POSTGRES_DB], 'database credentials');
  const tokenDir = '/etc/sluice/secrets';
  const init = S['secrets-init'];
  const initScript = (init.command || []).join('\n');
  for (const f of ['admin-token', 'master-key', 'node-token']) assert(initScript.includes(f), `secrets-init writes ${f}`);
  const mountsSecrets = (s) => (s.volumes || []).some((v) => String(v).startsWith(`secrets:${tokenDir}`));
  assert(mountsSecrets(init), 'secrets-init writes the secrets volume');
  eq(S.controlplane.depends_on['secrets-init'].condition, 'service_completed_successfully', 'control plane waits for its credentials');
  const nodeIds = new Set();
  for (const n of ['dataplane-1', 'dataplane-2']) {
    const d = sluiceCommand(S[n]);
    const [host, port] = d.flags.controlplane.split(':');
    eq(host, 'controlplane', `${n}: control plane host`);
    eq(Number(port), portOf(cp.flags['grpc-listen']), `${n}: control plane gRPC port`);
    eq(d.flags['node-token-file'], cp.flags['node-token-file'], `${n}: same node token file as the control plane`);
    assert(d.flags['node-token-file'].startsWith(tokenDir + '/') && mountsSecrets(S[n]), `${n}: node token mounted`);
    const id = (S[n].environment || {}).SLUICE_NODE_ID || d.flags['node-id'] || S[n].hostname;
    assert(id && !nodeIds.has(id), `${n}: node ids must be unique`);
    nodeIds.add(id);
    const containerPorts = (S[n].ports || []).map((p) => Number(String(p).split(':')[2]));
    eq(containerPorts.sort(), [portOf(d.flags.listen), portOf(d.flags['admin-listen'])].sort(), `${n}: published ports are its listeners`);
    const vols = (S[n].volumes || []).map((v) => String(v).split(':')[1]);
    assert(vols.includes(path.dirname(d.flags['snapshot-cache'])) && vols.includes(d.flags['spool-dir']), `${n}: snapshot cache and spool on volumes`);
    const grace = parseInt(S[n].stop_grace_period, 10);
    assert(grace > Number(d.flags['drain-timeout']), `${n}: stop_grace_period must exceed the drain timeout`);
  }
  for (const f of ['admin-token-file', 'master-key-file', 'node-token-file']) assert(cp.flags[f].startsWith(tokenDir + '/'), `control plane ${f} in the secrets volume`);
  assert(mountsSecrets(S.controlplane), 'control plane mounts the secrets volume');
  const cpPorts = S.controlplane.ports.map((p) => Number(String(p).split(':')[2])).sort();
  eq(cpPorts, [portOf(cp.flags['grpc-listen']), portOf(cp.flags['http-listen'])].sort(), 'control plane published ports');
  const ctl = sluiceCommand(S.sluicectl);
  eq(ctl.flags.server, `controlplane:${portOf(cp.flags['grpc-listen'])}`, 'sluicectl server');
  eq(ctl.flags['token-file'], cp.flags['admin-token-file'], 'sluicectl admin token');
  for (const n of ['migrate', 'controlplane', 'dataplane-1', 'dataplane-2', 'mockllm']) {
    assert(S[n].read_only === true && (S[n].cap_drop || []).includes('ALL'), `${n}: read-only root and no capabilities`);
  }
});

// ---------------------------------------------------------------- image
test('Dockerfile: Debian 12 build stage installs build-packages.txt, slim runtime installs runtime-packages.txt', () => {
  const text = fs.readFileSync(DOCKERFILE, 'utf8').replace(/\\\n/g, ' ');
  const argDefaults = Object.fromEntries([...text.matchAll(/^ARG (\w+)=(\S*)/gm)].map((m) => [m[1], m[2].replace(/^"|"$/g, '')]));
  const expand = (s) => s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => argDefaults[a || b] || '');
  const stages = [...text.matchAll(/^FROM (\S+)(?: AS (\S+))?/gim)].map((m) => ({ image: expand(m[1]), name: m[2] }));
  eq(stages.map((s) => s.image), ['debian:12', 'debian:12-slim'], 'base images');
  const [build, runtime] = text.split(/^FROM /m).slice(1);
  assert(/COPY deploy\/deps\/build-packages\.txt/.test(build) && /build-packages\.txt[^\n]*\|\s*xargs apt-get install -y --no-install-recommends/.test(build), 'build stage installs build-packages.txt');
  assert(/cmake -S \. -B build -DCMAKE_BUILD_TYPE=Release/.test(build) && /cmake --build build/.test(build), 'build stage runs the documented cmake build');
  assert(/runtime-packages\.txt[^\n]*\|\s*xargs apt-get install -y --no-install-recommends/.test(runtime), 'runtime installs runtime-packages.txt');
  assert(!/build-packages/.test(runtime), 'runtime does not install build packages');
  assert(/rm -rf \/var\/lib\/apt\/lists/.test(runtime), 'apt lists removed');
  for (const b of BINARIES) assert(build.includes(`build/$b`) || build.includes(`build/${b}`), `binary ${b} copied`);
  assert(/for b in sluice-controlplane sluice-dataplane sluicectl sluice-mockllm/.test(build), 'the four binaries are installed');
  assert(/COPY --from=build \/out\/bin\/ \/usr\/local\/bin\//.test(runtime), 'binaries land in /usr/local/bin');
  assert(/useradd [^\n]*--uid 10001/.test(runtime) && /^USER 10001:10001/m.test(runtime), 'non-root user 10001');
  assert(/^HEALTHCHECK [^\n]*sluice-healthcheck/m.test(runtime), 'HEALTHCHECK uses sluice-healthcheck');
  for (const l of ['version', 'source', 'revision']) assert(runtime.includes(`org.opencontainers.image.${l}=`), `OCI label ${l}`);
  // Image defaults agree with the chart's default ports.
  const values = YAML.parse(fs.readFileSync(path.join(CHART, 'values.yaml'), 'utf8'));
  const envs = Object.fromEntries([...runtime.matchAll(/(SLUICE_\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
  eq(portOf(envs.SLUICE_GRPC_LISTEN), values.controlplane.ports.grpc, 'image gRPC port');
  eq(portOf(envs.SLUICE_HTTP_LISTEN), values.controlplane.ports.http, 'image HTTP port');
  eq(portOf(envs.SLUICE_LISTEN), values.dataplane.ports.http, 'image API port');
  eq(portOf(envs.SLUICE_ADMIN_LISTEN), values.dataplane.ports.admin, 'image admin port');
  // Every package list line is a bare Debian package name.
  for (const f of ['build-packages.txt', 'runtime-packages.txt']) {
    for (const line of fs.readFileSync(path.join(REPO, 'deploy/deps', f), 'utf8').split('\n')) {
      const p = line.replace(/#.*/, '').trim();
      if (p) assert(/^[a-z0-9][a-z0-9+.-]+$/.test(p), `${f}: "${p}" is not a package name`);
    }
  }
});

test('.dockerignore: keeps build output and VCS out, keeps what the Dockerfile copies', () => {
  const rules = fs.readFileSync(path.join(REPO, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  for (const need of ['.git', 'build']) assert(rules.includes(need), `.dockerignore must exclude ${need}`);
  const ignored = (p) => rules.some((r) => !r.startsWith('!') && (p === r || p.startsWith(r + '/')));
  for (const p of ['deploy/deps/build-packages.txt', 'deploy/deps/runtime-packages.txt', 'deploy/docker/healthcheck.sh', 'CMakeLists.txt', 'common', 'controlplane', 'dataplane', 'cli', 'proto', 'migrations', 'tests']) {
    assert(!ignored(p), `.dockerignore excludes ${p}, which the build needs`);
  }
});

test('runtime-packages.txt (with its dependencies) provides every shared library the binaries load', () => {
  const dir = args['build-dir'];
  const bins = BINARIES.map((b) => path.join(dir || '', b));
  if (!dir || !bins.every((b) => fs.existsSync(b))) throw new SkipTest('no built binaries (pass --build-dir after a build)');
  const sh = (cmd, a) => spawnSync(cmd, a, { encoding: 'utf8' });
  const libs = new Set();
  for (const b of bins) {
    const r = sh('ldd', [b]);
    assert(r.status === 0, `ldd ${b}: ${r.stderr}`);
    assert(!/not found/.test(r.stdout), `${b} has unresolved libraries:\n${r.stdout}`);
    for (const m of r.stdout.matchAll(/=> (\/\S+)/g)) libs.add(m[1]);
  }
  const owner = (p) => {
    const real = fs.realpathSync(p);
    for (const cand of [p, real, '/usr' + p, real.replace(/^\/usr/, '')]) {
      const r = sh('dpkg', ['-S', cand]);
      if (r.status === 0) return r.stdout.split(':')[0].trim();
    }
    return null;
  };
  const runtime = fs.readFileSync(path.join(REPO, 'deploy/deps/runtime-packages.txt'), 'utf8').split('\n')
    .map((l) => l.replace(/#.*/, '').trim()).filter(Boolean);
  const dep = sh('apt-cache', ['depends', '--recurse', '--no-recommends', '--no-suggests', '--no-conflicts',
    '--no-breaks', '--no-replaces', '--no-enhances', ...runtime]);
  if (dep.status !== 0) throw new SkipTest('apt-cache has no package lists');
  const closure = new Set(dep.stdout.split('\n').filter((l) => l && !l.startsWith(' ')).map((l) => l.trim().replace(/:.*$/, '')));
  // Part of every debian:12-slim image.
  for (const p of ['libc6', 'libgcc-s1', 'libstdc++6', 'zlib1g']) closure.add(p);
  const missing = [];
  for (const lib of libs) {
    const pkg = owner(lib);
    if (pkg && !closure.has(pkg)) missing.push(`${lib} (${pkg})`);
  }
  eq(missing, [], 'libraries whose package runtime-packages.txt does not pull in');
});

test('sluice-healthcheck: 0 on 200, 1 on 503 or when nothing listens; finds the port from the main process', async () => {
  const server = http.createServer((req, res) => {
    res.writeHead(req.url === '/healthz' ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(req.url === '/healthz' ? 'ok\n' : 'not ready\n');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const run = (a) => new Promise((resolve) => {
    const p = spawn('bash', [HEALTHCHECK, ...a], { stdio: ['ignore', 'ignore', 'pipe'] });
    p.on('exit', (code) => resolve(code));
  });
  try {
    assert(fs.statSync(HEALTHCHECK).mode & 0o111, 'healthcheck.sh is executable');
    eq(await run([`127.0.0.1:${port}`, '/healthz']), 0, '200 is healthy');
    eq(await run([`0.0.0.0:${port}`]), 0, 'wildcard listen address maps to loopback, default path /healthz');
    eq(await run([`127.0.0.1:${port}`, '/readyz']), 1, '503 is unhealthy');
    const closed = http.createServer();
    await new Promise((r) => closed.listen(0, '127.0.0.1', r));
    const closedPort = closed.address().port;
    await new Promise((r) => closed.close(r));
    eq(await run([`127.0.0.1:${closedPort}`]), 1, 'nothing listening is unhealthy');
    eq(await run(['not-an-address']), 1, 'bad address is an error');
    // Without an address the script asks the container's main process.
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-hc-'));
    const asPid1 = async (argv, env = {}) => {
      const f = path.join(tmp, 'cmdline');
      fs.writeFileSync(f, argv.join('\0') + '\0');
      return new Promise((resolve) => {
        const p = spawn('bash', [HEALTHCHECK], {
          stdio: ['ignore', 'ignore', 'pipe'],
          env: { PATH: process.env.PATH, SLUICE_HEALTHCHECK_CMDLINE: f, ...env },
        });
        p.on('exit', (code) => resolve(code));
      });
    };
    try {
      eq(await asPid1(['/usr/local/bin/sluice-dataplane', '--listen', '0.0.0.0:1', '--admin-listen', `0.0.0.0:${port}`]), 0, 'data plane: --admin-listen');
      eq(await asPid1(['sluice-dataplane', '--listen', '0.0.0.0:1'], { SLUICE_ADMIN_LISTEN: `0.0.0.0:${port}` }), 0, 'data plane: SLUICE_ADMIN_LISTEN');
      eq(await asPid1(['sluice-controlplane', 'serve', `--http-listen=127.0.0.1:${port}`, '--grpc-listen', '0.0.0.0:1']), 0, 'control plane: --http-listen=');
      eq(await asPid1(['sluice-mockllm', '--listen', '127.0.0.1', String(port), '--api-key', 'k']), 0, 'HOST:PORT split in place');
      eq(await asPid1(['sluice-controlplane', 'migrate', '--database-url', 'postgresql://x']), 0, 'migrate has nothing to probe');
      eq(await asPid1(['sluice-dataplane', '--admin-listen', `0.0.0.0:${closedPort}`]), 1, 'data plane down');
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  } finally {
    server.close();
  }
});

fs.mkdirSync(OUT, { recursive: true });
runAll();
