package portal

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"dsh/control"
)

// This file holds the portal's pages for hardware tokens and for soft tokens delivered by
// e-mail: resynchronising a hardware token, and the page an e-mailed one-time link opens,
// which shows the new token's QR code once after the password and the new PIN.

// tokenKind describes how a token makes codes, for the My tokens table.
func tokenKind(t control.TokenView) string {
	if !t.Hardware {
		return "Soft token (TOTP, app)"
	}
	d := "Hardware " + strings.ToUpper(t.Kind) + ", " + strconv.Itoa(t.Digits) + " digits"
	if t.Kind == "totp" && t.Period > 0 {
		d += ", every " + strconv.Itoa(t.Period) + " s"
	}
	if t.Kind == "hotp" {
		d += ", press the button"
	}
	return d
}

func (s *Server) resyncToken(w http.ResponseWriter, r *http.Request, ws *websession) {
	req := control.ResyncRequest{ID: r.PostFormValue("token"), Code1: strings.TrimSpace(r.PostFormValue("code1")), Code2: strings.TrimSpace(r.PostFormValue("code2"))}
	err := s.svc.ResyncToken(r.Context(), caller(ws, r), req)
	s.done(w, r, ws, "/security", err, fmt.Sprintf("Token %s is in step again.", req.ID))
}

type claimData struct {
	User string
}

// claimPage is where an e-mailed link lands. The link's code is in the URL's fragment,
// which the browser never sends: the page's script copies it into the form.
func (s *Server) claimPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, "claim", page{Title: "Your new soft token", CSRF: preToken(w, r), Data: claimData{}})
}

func (s *Server) claim(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	user := strings.TrimSpace(r.PostFormValue("user"))
	again := func(status int, msg string) {
		s.render(w, "claim", page{Title: "Your new soft token", Status: status, CSRF: preToken(w, r), Flash: &flash{Msg: msg}, Data: claimData{User: user}})
	}
	if !checkPre(r) {
		again(http.StatusForbidden, "This form has expired or did not come from this site. Try again.")
		return
	}
	sec := formSecrets(r, "password", "pin", "pin2")
	defer sec.wipe()
	if err := sec.confirmed("pin", "pin2", "PINs"); err != nil {
		again(http.StatusBadRequest, "The two PINs differ.")
		return
	}
	uid, ok := s.svc.UIDOf(user)
	if !ok {
		uid = -1 // refused and audited by the daemon like a wrong password
	}
	var tc control.TokenCreated
	err := s.checkCredentials(r, func() (err error) {
		tc, err = s.svc.ClaimTokenLink(r.Context(), control.Caller{UID: uid, GID: -1, Remote: clientOf(r)}, user,
			strings.ToUpper(strings.TrimSpace(r.PostFormValue("code"))), sec["password"], sec["pin"])
		return err
	})
	if err != nil {
		status, msg := s.message(r, err)
		again(status, msg)
		return
	}
	s.render(w, "token", page{Title: "Your new soft token", Data: s.tokenPage(tc, true)})
}
