// celcost evaluates a ValidatingAdmissionPolicy's variables and validations the way
// kube-apiserver does (the same CEL environment, cost tracking and per-expression limit, from
// the Kubernetes modules pinned in go.mod) against objects and an authorizer described on
// stdin, and prints what each evaluation cost. The API server does not report the cost of an
// admission; this tool measures it, so the test suite can show that a policy stays within its
// budget at every list length the schema allows. Built by build.sh.
//
// Input (JSON on stdin):
//
//	{"policy": <ValidatingAdmissionPolicy>,
//	 "cases": [{"name": "...", "operation": "CREATE", "object": {...}, "oldObject": {...},
//	            "allow": [{"verbs": ["get"], "group": "", "resource": "secrets",
//	                       "namespace": "shop", "names": ["a"]}]}]}
//
// "allow" lists what the requesting user may do (a rule without names allows every name; no
// rule allows nothing). Output (JSON on stdout), one entry per case: the cost the validations
// used of the policy's budget, the cost of the message expressions, whether it was admitted,
// and each denial's message or evaluation error.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"

	celtypes "github.com/google/cel-go/common/types"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/cel/environment"
)

type rule struct {
	Verbs     []string `json:"verbs"`
	Group     string   `json:"group"`
	Resource  string   `json:"resource"`
	Namespace string   `json:"namespace"`
	Names     []string `json:"names"`
}

type testCase struct {
	Name      string                 `json:"name"`
	Operation string                 `json:"operation"`
	Object    map[string]interface{} `json:"object"`
	OldObject map[string]interface{} `json:"oldObject"`
	Allow     []rule                 `json:"allow"`
}

type input struct {
	Policy admissionregistrationv1.ValidatingAdmissionPolicy `json:"policy"`
	Cases  []testCase                                        `json:"cases"`
}

type outcome struct {
	Name         string   `json:"name"`
	Cost         int64    `json:"cost"`
	MessageCost  int64    `json:"messageCost"`
	Budget       int64    `json:"budget"`
	PerCallLimit int64    `json:"perCallLimit"`
	Checks       int      `json:"authorizationChecks"`
	Admitted     bool     `json:"admitted"`
	Denials      []string `json:"denials"`
	Errors       []string `json:"errors"`
}

// rules is the requesting user's permissions; it counts the checks it answers.
type rules struct {
	allow  []rule
	checks int
}

func (r *rules) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	r.checks++
	for _, x := range r.allow {
		if x.Group == a.GetAPIGroup() && x.Resource == a.GetResource() &&
			(x.Namespace == "" || x.Namespace == a.GetNamespace()) &&
			slices.Contains(x.Verbs, a.GetVerb()) &&
			(len(x.Names) == 0 || slices.Contains(x.Names, a.GetName())) {
			return authorizer.DecisionAllow, "", nil
		}
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "celcost: reading stdin:", err)
		os.Exit(2)
	}
	// The environment kube-apiserver compiles policies in (StrictCostEnforcementForVAP is on
	// by default), and the variables a validation may use.
	env, err := cel.NewCompositionEnv(cel.VariablesTypeName,
		environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion(), true))
	if err != nil {
		panic(err)
	}
	compiler := cel.NewCompositedCompilerFromTemplate(env)
	withAuthz := cel.OptionalVariableDeclarations{HasAuthorizer: true, StrictCost: true}
	withoutAuthz := cel.OptionalVariableDeclarations{HasAuthorizer: false, StrictCost: true}
	var variables []cel.NamedExpressionAccessor
	for _, v := range in.Policy.Spec.Variables {
		variables = append(variables, &validating.Variable{Name: v.Name, Expression: v.Expression})
	}
	compiler.CompileAndStoreVariables(variables, withAuthz, environment.StoredExpressions)
	var validations, messages []cel.ExpressionAccessor
	for _, v := range in.Policy.Spec.Validations {
		validations = append(validations, &validating.ValidationCondition{
			Expression: v.Expression, Message: v.Message, Reason: v.Reason,
		})
		if v.MessageExpression != "" {
			messages = append(messages, &validating.MessageExpressionCondition{MessageExpression: v.MessageExpression})
		} else {
			messages = append(messages, nil)
		}
	}
	validationFilter := compiler.CompileCondition(validations, withAuthz, environment.StoredExpressions)
	messageFilter := compiler.CompileCondition(messages, withoutAuthz, environment.StoredExpressions)

	gvk := schema.GroupVersionKind{Group: "redisqueue.dev", Version: "v1alpha1", Kind: "RedisQueue"}
	gvr := schema.GroupVersionResource{Group: "redisqueue.dev", Version: "v1alpha1", Resource: "redisqueues"}
	var out []outcome
	for _, c := range in.Cases {
		obj := &unstructured.Unstructured{Object: c.Object}
		var old runtime.Object
		operation := admission.Create
		if c.Operation == "UPDATE" {
			operation = admission.Update
			old = &unstructured.Unstructured{Object: c.OldObject}
		}
		attrs := admission.NewAttributesRecord(obj, old, gvk, obj.GetNamespace(), obj.GetName(),
			gvr, "", operation, nil, false, &user.DefaultInfo{Name: "author"})
		versioned := &admission.VersionedAttributes{
			Attributes: attrs, VersionedKind: gvk, VersionedObject: obj, VersionedOldObject: old,
		}
		request := cel.CreateAdmissionRequest(attrs, metav1.GroupVersionResource(gvr), metav1.GroupVersionKind(gvk))
		authz := &rules{allow: c.Allow}
		budget := int64(celconfig.RuntimeCELCostBudget)
		results, remaining, err := validationFilter.ForInput(context.Background(), versioned, request,
			cel.OptionalVariableBindings{Authorizer: authz}, nil, budget)
		o := outcome{Name: c.Name, Budget: budget, PerCallLimit: celconfig.PerCallLimit, Admitted: true}
		if err != nil {
			o.Admitted = false
			o.Errors = append(o.Errors, err.Error())
			out = append(out, o)
			continue
		}
		o.Cost = budget - remaining
		o.Checks = authz.checks
		texts, left, _ := messageFilter.ForInput(context.Background(), versioned, request,
			cel.OptionalVariableBindings{}, nil, remaining)
		o.MessageCost = remaining - left
		for i, r := range results {
			switch {
			case r.Error != nil:
				o.Admitted = false
				o.Errors = append(o.Errors, r.Error.Error())
			case r.EvalResult != celtypes.True:
				o.Admitted = false
				text := in.Policy.Spec.Validations[i].Message
				if i < len(texts) && texts[i].Error == nil && texts[i].EvalResult != nil {
					if s, ok := texts[i].EvalResult.Value().(string); ok {
						text = s
					}
				}
				o.Denials = append(o.Denials, text)
			}
		}
		out = append(out, o)
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetIndent("", "  ")
	if err := encoder.Encode(out); err != nil {
		panic(err)
	}
}
