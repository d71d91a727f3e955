package api

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/metalpower/metalpower/internal/node"
	"github.com/metalpower/metalpower/internal/store"
)

// The node traits API (Ironic 1.37): Nova's ironic driver reads a node's
// traits for its resource provider; operators set them here.

// traitsNode finds the node of a traits request, refusing versions before
// 1.37 as Ironic does (the resource does not exist there).
func (s *Server) traitsNode(w http.ResponseWriter, r *http.Request) (*node.Node, bool) {
	return s.lookupSince(w, r, 37, "node traits need")
}

func (s *Server) listTraits(w http.ResponseWriter, r *http.Request) {
	n, ok := s.traitsNode(w, r)
	if !ok {
		return
	}
	traits := n.Traits
	if traits == nil {
		traits = []string{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"traits": traits})
}

// editTraits applies edit to the node's traits and answers 204.
func (s *Server) editTraits(w http.ResponseWriter, r *http.Request, n *node.Node, edit func(traits []string) []string) {
	_, err := store.Modify(r.Context(), s.Store, n.UUID, func(n *node.Node) error {
		n.Traits = edit(slices.Clone(n.Traits))
		return nil
	})
	s.writeStoreResult(w, r, err, http.StatusNoContent)
}

func (s *Server) setTraits(w http.ResponseWriter, r *http.Request) {
	n, ok := s.traitsNode(w, r)
	if !ok {
		return
	}
	var req struct {
		Traits *[]string `json:"traits"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Traits == nil {
		writeError(w, http.StatusBadRequest, "Mandatory field missing: traits")
		return
	}
	s.editTraits(w, r, n, func([]string) []string { return dedupe(*req.Traits) })
}

func (s *Server) clearTraits(w http.ResponseWriter, r *http.Request) {
	n, ok := s.traitsNode(w, r)
	if !ok {
		return
	}
	s.editTraits(w, r, n, func([]string) []string { return nil })
}

func (s *Server) addTrait(w http.ResponseWriter, r *http.Request) {
	n, ok := s.traitsNode(w, r)
	if !ok {
		return
	}
	trait := r.PathValue("trait")
	s.editTraits(w, r, n, func(traits []string) []string {
		if slices.Contains(traits, trait) {
			return traits
		}
		return append(traits, trait)
	})
}

func (s *Server) removeTrait(w http.ResponseWriter, r *http.Request) {
	n, ok := s.traitsNode(w, r)
	if !ok {
		return
	}
	trait := r.PathValue("trait")
	if !slices.Contains(n.Traits, trait) {
		writeError(w, http.StatusNotFound, fmt.Sprintf("Node %s doesn't have a trait '%s'", n.UUID, trait))
		return
	}
	s.editTraits(w, r, n, func(traits []string) []string {
		return slices.DeleteFunc(traits, func(t string) bool { return t == trait })
	})
}

// dedupe keeps the first of each trait, in order.
func dedupe(traits []string) []string {
	out := []string{}
	for _, t := range traits {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}
