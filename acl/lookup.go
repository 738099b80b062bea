package acl

import "slices"

// ShareProject returns the project share belongs to. Like UserIDs it is for the daemon's own
// decisions (the airlock's), which check the caller's role themselves; it audits nothing.
func (s *Store) ShareProject(share string) (string, bool) {
	sh := s.snap.Load().shares[share]
	if sh == nil {
		return "", false
	}
	return sh.Project, true
}

// ProjectByName returns project name with its IAO and IAAs, for the same decisions.
func (s *Store) ProjectByName(name string) (Project, bool) {
	p := s.snap.Load().projects[name]
	if p == nil {
		return Project{}, false
	}
	out := *p
	out.IAAs = slices.Clone(p.IAAs)
	return out, true
}
