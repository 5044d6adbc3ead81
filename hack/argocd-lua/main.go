// Command argocd-lua runs ferryman's Argo CD health checks and resource actions through
// Argo CD's own Lua package (github.com/argoproj/argo-cd/v3/util/lua), exactly as Argo CD
// runs them, in the two ways Argo CD loads a script:
//
//   - "argocd-cm": from the rendered argocd-cm ConfigMap (the
//     resource.customizations.health|actions.<group>_<Kind> keys), with open libraries
//     OFF (only base, table, package and a safe os), via VM.GetHealthScript,
//     GetResourceActionDiscovery and GetResourceAction on the parsed overrides;
//   - "built-in": the files under resource_customizations/<group>/<Kind>/ with open
//     libraries ON, as Argo CD runs its own built-in scripts.
//
// Usage:
//
//	argocd-lua test --cm argocd-cm.yaml DIR...
//	    runs every case of DIR/health_test.yaml and DIR/actions/action_test.yaml in both
//	    modes; prints one line per case and exits 1 on any mismatch or error.
//	argocd-lua health --cm argocd-cm.yaml DIR FILE...
//	    the health of each object file (YAML or JSON) in both modes, as a JSON list of
//	    {"file", "mode", "status", "message", "error"} on stdout.
//	argocd-lua action --cm argocd-cm.yaml DIR ACTION FILE
//	    runs ACTION twice in both modes: on FILE, then (within the same os.time() second)
//	    on the first result with metadata.resourceVersion bumped as the API server does;
//	    prints {"mode", "first", "second", "sameSecond"} JSON lines with both results'
//	    annotations, so a caller can check that the nonces differ.
//
// The action-id nonce depends on the clock; "test" accepts an actual nonce that matches
// argocd-<seconds>-<resourceVersion of the input> and compares the rest exactly.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"time"

	appv1 "github.com/argoproj/argo-cd/v3/pkg/apis/application/v1alpha1"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const (
	actionAnnotation = "ferryman.dev/action"
	nonceAnnotation  = "ferryman.dev/action-id"
)

// mode is one way Argo CD loads a script.
type mode struct {
	name string
	vm   lua.VM
	dir  string // built-in: scripts read from files here
}

type healthTests struct {
	Tests []struct {
		InputPath    string `json:"inputPath"`
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
	} `json:"tests"`
}

type actionTests struct {
	DiscoveryTests []struct {
		InputPath string `json:"inputPath"`
		Result    []struct {
			Name     string `json:"name"`
			Disabled bool   `json:"disabled"`
		} `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	cm := fs.String("cm", "", "the rendered argocd-cm ConfigMap (YAML)")
	_ = fs.Parse(os.Args[2:])
	args := fs.Args()
	if *cm == "" {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "test":
		err = runTests(*cm, args)
	case "health":
		if len(args) < 2 {
			usage()
		}
		err = runHealth(*cm, args[0], args[1:])
	case "action":
		if len(args) != 3 {
			usage()
		}
		err = runActionTwice(*cm, args[0], args[1], args[2])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: argocd-lua test --cm CM DIR... | health --cm CM DIR FILE... | action --cm CM DIR ACTION FILE")
	os.Exit(2)
}

// modes builds both VMs for the customizations in dir (…/<group>/<Kind>).
func modes(cmPath, dir string) ([]mode, error) {
	raw, err := os.ReadFile(cmPath)
	if err != nil {
		return nil, err
	}
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		return nil, fmt.Errorf("%s: %w", cmPath, err)
	}
	kind := filepath.Base(dir)
	group := filepath.Base(filepath.Dir(dir))
	suffix := group + "_" + kind
	health, ok := cm.Data["resource.customizations.health."+suffix]
	if !ok {
		return nil, fmt.Errorf("%s has no resource.customizations.health.%s", cmPath, suffix)
	}
	override := appv1.ResourceOverride{
		HealthLua:   health,
		Actions:     cm.Data["resource.customizations.actions."+suffix],
		UseOpenLibs: cm.Data["resource.customizations.useOpenLibs."+suffix] == "true",
	}
	return []mode{
		{name: "argocd-cm", vm: lua.VM{ResourceOverrides: map[string]appv1.ResourceOverride{group + "/" + kind: override}}},
		{name: "built-in", vm: lua.VM{UseOpenLibs: true}, dir: dir},
	}, nil
}

func readObj(path string) (*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

func (m mode) health(obj *unstructured.Unstructured) (string, string, error) {
	script, open := "", m.vm.UseOpenLibs
	if m.dir == "" {
		s, o, err := m.vm.GetHealthScript(obj)
		if err != nil {
			return "", "", err
		}
		script, open = s, o
	} else {
		b, err := os.ReadFile(filepath.Join(m.dir, "health.lua"))
		if err != nil {
			return "", "", err
		}
		script = string(b)
	}
	if script == "" {
		return "", "", errors.New("no health script for " + obj.GroupVersionKind().String())
	}
	vm := m.vm
	vm.UseOpenLibs = open
	hs, err := vm.ExecuteHealthLua(obj, script)
	if err != nil {
		return "", "", err
	}
	return string(hs.Status), hs.Message, nil
}

func (m mode) discovery(obj *unstructured.Unstructured) (map[string]bool, error) {
	var scripts []string
	if m.dir == "" {
		s, err := m.vm.GetResourceActionDiscovery(obj)
		if err != nil {
			return nil, err
		}
		scripts = s
	} else {
		b, err := os.ReadFile(filepath.Join(m.dir, "actions", "discovery.lua"))
		if err != nil {
			return nil, err
		}
		scripts = []string{string(b)}
	}
	found, err := m.vm.ExecuteResourceActionDiscovery(obj, scripts)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, a := range found {
		out[a.Name] = a.Disabled
	}
	return out, nil
}

func (m mode) action(obj *unstructured.Unstructured, name string) (*unstructured.Unstructured, error) {
	var script string
	if m.dir == "" {
		def, err := m.vm.GetResourceAction(obj, name)
		if err != nil {
			return nil, err
		}
		script = def.ActionLua
	} else {
		b, err := os.ReadFile(filepath.Join(m.dir, "actions", name, "action.lua"))
		if err != nil {
			return nil, err
		}
		script = string(b)
	}
	impacted, err := m.vm.ExecuteResourceAction(obj, script, nil)
	if err != nil {
		return nil, err
	}
	if len(impacted) != 1 || impacted[0].K8SOperation != lua.PatchOperation {
		return nil, fmt.Errorf("action %s: want one patch of the object itself, got %d results", name, len(impacted))
	}
	return impacted[0].UnstructuredObj, nil
}

// plain turns an object into JSON-decoded maps, so that Lua's float64 numbers and YAML's
// integers compare equal.
func plain(obj map[string]any) (map[string]any, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	return out, json.Unmarshal(b, &out)
}

// checkNonce verifies the action-id an action wrote against the input's resourceVersion
// and replaces it (in both objects) with a placeholder, so the rest compares exactly.
func checkNonce(got, want map[string]any, input *unstructured.Unstructured) error {
	ann, _, _ := unstructured.NestedStringMap(got, "metadata", "annotations")
	nonce, ok := ann[nonceAnnotation]
	if !ok {
		return errors.New("the action set no " + nonceAnnotation)
	}
	rv := input.GetResourceVersion()
	if rv == "" {
		rv = "0"
	}
	re := regexp.MustCompile(`^argocd-([0-9]+)-` + regexp.QuoteMeta(rv) + `$`)
	if !re.MatchString(nonce) {
		return fmt.Errorf("nonce %q is not argocd-<os.time()>-%s", nonce, rv)
	}
	for _, o := range []map[string]any{got, want} {
		if _, found, _ := unstructured.NestedString(o, "metadata", "annotations", nonceAnnotation); found {
			_ = unstructured.SetNestedField(o, "<nonce>", "metadata", "annotations", nonceAnnotation)
		}
	}
	return nil
}

func runTests(cmPath string, dirs []string) error {
	failed, cases := 0, 0
	report := func(m mode, what string, err error) {
		cases++
		if err != nil {
			failed++
			fmt.Printf("FAIL %s %s: %v\n", m.name, what, err)
		} else {
			fmt.Printf("ok   %s %s\n", m.name, what)
		}
	}
	for _, dir := range dirs {
		ms, err := modes(cmPath, dir)
		if err != nil {
			return err
		}
		var ht healthTests
		if err := readYAML(filepath.Join(dir, "health_test.yaml"), &ht); err != nil {
			return err
		}
		if len(ht.Tests) == 0 {
			return fmt.Errorf("%s/health_test.yaml has no tests", dir)
		}
		var at actionTests
		actionsFile := filepath.Join(dir, "actions", "action_test.yaml")
		if _, err := os.Stat(actionsFile); err == nil {
			if err := readYAML(actionsFile, &at); err != nil {
				return err
			}
		}
		for _, m := range ms {
			for _, t := range ht.Tests {
				what := fmt.Sprintf("%s health %s", dir, t.InputPath)
				obj, err := readObj(filepath.Join(dir, t.InputPath))
				if err == nil {
					var status, message string
					status, message, err = m.health(obj)
					if err == nil && (status != t.HealthStatus.Status || message != t.HealthStatus.Message) {
						err = fmt.Errorf("got {%s %q}, want {%s %q}", status, message, t.HealthStatus.Status, t.HealthStatus.Message)
					}
				}
				report(m, what, err)
			}
			for _, t := range at.DiscoveryTests {
				what := fmt.Sprintf("%s discovery %s", dir, t.InputPath)
				obj, err := readObj(filepath.Join(dir, "actions", t.InputPath))
				if err == nil {
					var got map[string]bool
					got, err = m.discovery(obj)
					want := map[string]bool{}
					for _, r := range t.Result {
						want[r.Name] = r.Disabled
					}
					if err == nil && !reflect.DeepEqual(got, want) {
						err = fmt.Errorf("got %v, want %v", got, want)
					}
				}
				report(m, what, err)
			}
			for _, t := range at.ActionTests {
				what := fmt.Sprintf("%s action %s %s", dir, t.Action, t.InputPath)
				report(m, what, actionCase(m, dir, t.Action, t.InputPath, t.ExpectedOutputPath))
			}
		}
	}
	fmt.Printf("%d cases, %d failed\n", cases, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d cases failed", failed, cases)
	}
	return nil
}

func actionCase(m mode, dir, action, input, expected string) error {
	obj, err := readObj(filepath.Join(dir, "actions", input))
	if err != nil {
		return err
	}
	wantObj, err := readObj(filepath.Join(dir, "actions", expected))
	if err != nil {
		return err
	}
	out, err := m.action(obj.DeepCopy(), action)
	if err != nil {
		return err
	}
	got, err := plain(out.Object)
	if err != nil {
		return err
	}
	want, err := plain(wantObj.Object)
	if err != nil {
		return err
	}
	if err := checkNonce(got, want, obj); err != nil {
		return err
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.Marshal(got)
		w, _ := json.Marshal(want)
		return fmt.Errorf("output differs:\n got  %s\n want %s", g, w)
	}
	return nil
}

func readYAML(path string, into any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(raw, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

type healthResult struct {
	File    string `json:"file"`
	Mode    string `json:"mode"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Error   string `json:"error,omitempty"`
}

func runHealth(cmPath, dir string, files []string) error {
	ms, err := modes(cmPath, dir)
	if err != nil {
		return err
	}
	results := []healthResult{}
	for _, f := range files {
		obj, err := readObj(f)
		if err != nil {
			return err
		}
		for _, m := range ms {
			r := healthResult{File: f, Mode: m.name}
			r.Status, r.Message, err = m.health(obj)
			if err != nil {
				r.Error = err.Error()
			}
			results = append(results, r)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}

// runActionTwice runs an action on an object and again on its result (resourceVersion
// bumped, as after the API server applied the first patch), both within one os.time()
// second (retried, at most 20 times, when a second boundary falls between them).
func runActionTwice(cmPath, dir, action, file string) error {
	ms, err := modes(cmPath, dir)
	if err != nil {
		return err
	}
	obj, err := readObj(file)
	if err != nil {
		return err
	}
	for _, m := range ms {
		var first, second *unstructured.Unstructured
		same := false
		for try := 0; try < 20 && !same; try++ {
			before := time.Now().Unix()
			first, err = m.action(obj.DeepCopy(), action)
			if err != nil {
				return err
			}
			next := first.DeepCopy()
			rv, _ := strconv.Atoi(obj.GetResourceVersion())
			next.SetResourceVersion(strconv.Itoa(rv + 1))
			second, err = m.action(next, action)
			if err != nil {
				return err
			}
			same = time.Now().Unix() == before
		}
		out := map[string]any{
			"mode":       m.name,
			"first":      first.GetAnnotations(),
			"second":     second.GetAnnotations(),
			"sameSecond": same,
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
	return nil
}
