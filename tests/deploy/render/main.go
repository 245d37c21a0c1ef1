// Command render renders a Helm chart the way `helm template` does, for
// tests on machines where Helm itself cannot be installed.
//
// It implements the part of Helm's template engine the Sluice chart relies
// on: Go text/template with the sprig functions Helm exposes (minus env and
// expandenv), Helm's own functions (include, tpl, required, fail, toYaml,
// fromYaml, toJson, fromJson, lookup), the built-in objects .Values,
// .Release, .Chart, .Capabilities, .Template and .Files, values coalesced
// from values.yaml and -f files in order (null deletes a key), numbers held
// as float64 as Helm's JSON-based YAML loader does, missing keys rendered as
// empty, templates named "_*" only defining helpers, NOTES.txt rendered on
// its own, and the chart's kubeVersion constraint checked.
//
// Usage:
//
//	render -chart DIR [-f values.yaml]... [-name RELEASE] [-namespace NS]
//	       [-kube-version 1.29.0] [-api-versions group/version[/Kind],...]
//	       [-upgrade] [-values-only] -out DIR
//
// It writes DIR/manifests.yaml (every rendered document, each preceded by a
// "# Source:" comment as helm template prints it), DIR/values.json (the
// coalesced values, what Helm validates against values.schema.json) and
// DIR/NOTES.txt. It exits 1 with the template error on stderr when rendering
// fails, which is how the tests check the chart's required/fail guards.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver/v3"
	"github.com/Masterminds/sprig/v3"
	yamlv2 "gopkg.in/yaml.v2"
	yamlv3 "gopkg.in/yaml.v3"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// KubeVersion mirrors Helm's .Capabilities.KubeVersion.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

// VersionSet mirrors Helm's .Capabilities.APIVersions.
type VersionSet []string

// Has reports whether "group/version" or "group/version/Kind" is served.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities mirrors Helm's .Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// Files mirrors the read-only part of Helm's .Files.
type Files map[string][]byte

func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

// Built-in API versions a default cluster serves (subset of Helm's default
// version set that matters to charts).
var builtinAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "autoscaling/v1", "autoscaling/v2",
	"policy/v1", "networking.k8s.io/v1", "rbac.authorization.k8s.io/v1",
	"apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"coordination.k8s.io/v1", "discovery.k8s.io/v1", "storage.k8s.io/v1",
	"scheduling.k8s.io/v1", "certificates.k8s.io/v1", "events.k8s.io/v1",
	"node.k8s.io/v1",
}

func main() {
	var valueFiles, apiVersions listFlag
	chartDir := flag.String("chart", "", "chart directory")
	release := flag.String("name", "release-name", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kubeVersion := flag.String("kube-version", "1.29.0", "Kubernetes version for .Capabilities")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade (.Release.IsUpgrade)")
	valuesOnly := flag.Bool("values-only", false, "only write the coalesced values.json")
	outDir := flag.String("out", "", "output directory")
	flag.Var(&valueFiles, "f", "values file (repeatable, later wins)")
	flag.Var(&apiVersions, "api-versions", "extra API versions (repeatable or comma separated)")
	flag.Parse()
	if *chartDir == "" || *outDir == "" {
		fmt.Fprintln(os.Stderr, "usage: render -chart DIR [-f values.yaml]... -out DIR")
		os.Exit(2)
	}
	if err := run(*chartDir, *release, *namespace, *kubeVersion, *upgrade, *valuesOnly, valueFiles, apiVersions, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(chartDir, release, namespace, kubeVer string, upgrade, valuesOnly bool, valueFiles, extraAPIs []string, outDir string) error {
	meta, err := loadChartMeta(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	chartName, _ := meta["Name"].(string)
	if chartName == "" {
		return errors.New("Chart.yaml: name is required")
	}

	defaults, err := readValuesFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	values := defaults
	for _, f := range valueFiles {
		user, err := readValuesFile(f)
		if err != nil {
			return err
		}
		values = coalesce(user, values)
	}

	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	valuesJSON, err := json.MarshalIndent(values, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "values.json"), append(valuesJSON, '\n'), 0o644); err != nil {
		return err
	}
	if valuesOnly {
		return nil
	}

	kv, err := semver.NewVersion(kubeVer)
	if err != nil {
		return fmt.Errorf("bad -kube-version %q: %w", kubeVer, err)
	}
	if c, _ := meta["KubeVersion"].(string); c != "" {
		constraint, err := semver.NewConstraint(c)
		if err != nil {
			return fmt.Errorf("Chart.yaml kubeVersion %q: %w", c, err)
		}
		if !constraint.Check(kv) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes v%s", c, kv)
		}
	}

	apis := append(VersionSet{}, builtinAPIVersions...)
	for _, a := range extraAPIs {
		for _, x := range strings.Split(a, ",") {
			if x = strings.TrimSpace(x); x != "" {
				apis = append(apis, x)
			}
		}
	}

	files, templates, err := loadChartFiles(chartDir, chartName)
	if err != nil {
		return err
	}

	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name":      release,
			"Namespace": namespace,
			"IsInstall": !upgrade,
			"IsUpgrade": upgrade,
			"Revision":  map[bool]int{false: 1, true: 2}[upgrade],
			"Service":   "Helm",
		},
		"Chart": meta,
		"Capabilities": &Capabilities{
			KubeVersion: KubeVersion{
				Version:    "v" + kv.String(),
				Major:      fmt.Sprint(kv.Major()),
				Minor:      fmt.Sprint(kv.Minor()),
				GitVersion: "v" + kv.String(),
			},
			APIVersions: apis,
			HelmVersion: map[string]string{"Version": "v3.14.0"},
		},
		"Files": files,
	}

	rendered, err := renderAll(templates, top, chartName)
	if err != nil {
		return err
	}

	var manifests bytes.Buffer
	var names []string
	for name := range rendered {
		names = append(names, name)
	}
	sort.Strings(names)
	notes := ""
	for _, name := range names {
		if path.Base(name) == "NOTES.txt" {
			notes = rendered[name]
			continue
		}
		for _, doc := range splitDocuments(rendered[name]) {
			var probe interface{}
			if err := yamlv3.Unmarshal([]byte(doc), &probe); err != nil {
				return fmt.Errorf("%s: rendered YAML does not parse: %v\n%s", name, err, doc)
			}
			if probe == nil {
				continue // comments only
			}
			fmt.Fprintf(&manifests, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	if err := os.WriteFile(filepath.Join(outDir, "manifests.yaml"), manifests.Bytes(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(outDir, "NOTES.txt"), []byte(notes), 0o644)
}

// loadChartMeta reads Chart.yaml into the field names Helm's chart.Metadata
// exposes to templates (.Chart.Name, .Chart.AppVersion, ...).
func loadChartMeta(file string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var m map[string]interface{}
	if err := yamlv3.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if m["apiVersion"] != "v2" {
		return nil, fmt.Errorf("%s: apiVersion must be v2", file)
	}
	out := map[string]interface{}{}
	for k, v := range m {
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	if v, ok := out["Version"].(string); !ok || v == "" {
		return nil, fmt.Errorf("%s: version is required", file)
	} else if _, err := semver.StrictNewVersion(v); err != nil {
		return nil, fmt.Errorf("%s: version %q is not SemVer 2: %v", file, v, err)
	}
	return out, nil
}

// readValuesFile parses YAML and, like Helm (sigs.k8s.io/yaml), passes it
// through JSON so numbers are float64 and maps are map[string]interface{}.
func readValuesFile(file string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	v, err := yamlToJSONValue(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := v.(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: values must be a mapping", file)
	}
	return m, nil
}

func yamlToJSONValue(raw []byte) (interface{}, error) {
	var v interface{}
	if err := yamlv3.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	j, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out interface{}
	if err := json.Unmarshal(j, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// coalesce merges src (user values) over dst (defaults) the way Helm does:
// maps merge key by key, any other value replaces, and an explicit null
// removes the default.
func coalesce(src, dst map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if v == nil {
			delete(out, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if sok && dok {
			out[k] = coalesce(sm, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

// loadChartFiles returns every file of the chart (for .Files) and the
// templates keyed by Helm's template name "<chart>/templates/<path>".
func loadChartFiles(chartDir, chartName string) (Files, map[string]string, error) {
	files := Files{}
	templates := map[string]string{}
	err := filepath.Walk(chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(chartDir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[chartName+"/"+rel] = string(raw)
		} else if rel != "Chart.yaml" && rel != "values.yaml" && rel != "values.schema.json" {
			files[rel] = raw
		}
		return nil
	})
	return files, templates, err
}

func funcMap(root **template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")

	includeDepth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		includeDepth[name]++
		defer func() { includeDepth[name]-- }()
		if includeDepth[name] > 1000 {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		var buf bytes.Buffer
		if err := (*root).ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := (*root).Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", fmt.Errorf("error calling tpl: %w", err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["fail"] = func(msg string) (string, error) { return "", errors.New(msg) }
	f["toYaml"] = func(v interface{}) string {
		s, err := toYAML(v)
		if err != nil {
			return ""
		}
		return s
	}
	f["mustToYaml"] = toYAML
	f["fromYaml"] = func(s string) map[string]interface{} {
		v, err := yamlToJSONValue([]byte(s))
		if err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := v.(map[string]interface{})
		if m == nil {
			m = map[string]interface{}{}
		}
		return m
	}
	f["fromYamlArray"] = func(s string) []interface{} {
		v, err := yamlToJSONValue([]byte(s))
		if err != nil {
			return []interface{}{err.Error()}
		}
		a, _ := v.([]interface{})
		return a
	}
	f["toJson"] = func(v interface{}) string {
		b, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(b)
	}
	f["mustToJson"] = func(v interface{}) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	}
	f["fromJson"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	// No cluster to read: lookup finds nothing, as under `helm template`.
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	return f
}

// toYAML matches Helm's toYaml: JSON first (sigs.k8s.io/yaml), then YAML
// with sorted keys, without the trailing newline.
func toYAML(v interface{}) (string, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	var generic interface{}
	if err := yamlv2.Unmarshal(j, &generic); err != nil {
		return "", err
	}
	out, err := yamlv2.Marshal(generic)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

func renderAll(templates map[string]string, top map[string]interface{}, chartName string) (map[string]string, error) {
	var root *template.Template
	root = template.New("gotpl").Option("missingkey=zero").Funcs(funcMap(&root))

	var names []string
	for name := range templates {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := root.New(name).Parse(templates[name]); err != nil {
			return nil, fmt.Errorf("parse error in %s: %w", name, err)
		}
	}

	out := map[string]string{}
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{
			"Name":     name,
			"BasePath": chartName + "/templates",
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return nil, cleanupError(err)
		}
		out[name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// cleanupError shortens text/template's error chain for fail and required
// to the message the chart author wrote, prefixed with the outermost
// template position, much as Helm prints "execution error at (...): msg".
func cleanupError(err error) error {
	msg := err.Error()
	for _, marker := range []string{"error calling fail: ", "error calling required: "} {
		if i := strings.LastIndex(msg, marker); i >= 0 {
			loc := strings.SplitN(strings.TrimPrefix(msg, "template: "), ": executing", 2)[0]
			return fmt.Errorf("execution error at (%s): %s", loc, msg[i+len(marker):])
		}
	}
	return err
}

// splitDocuments splits a rendered file on YAML document separators and
// drops documents that are empty or whitespace.
func splitDocuments(s string) []string {
	var docs []string
	sep := regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)
	for _, d := range sep.Split(s, -1) {
		if strings.TrimSpace(d) == "" {
			continue
		}
		docs = append(docs, strings.Trim(d, "\n"))
	}
	return docs
}
