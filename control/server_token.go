package control

import (
	"context"
	"net/http"
)

// Tokens is the part of the daemon behind the token-service endpoints. Secrets arrive as
// byte slices that the server wipes when the call returns.
type Tokens interface {
	EnrolmentCode(ctx context.Context, c Caller, user string) (EnrolmentCode, error)
	Enrol(ctx context.Context, c Caller, code string, password, pin []byte, qs [3]Question, tokenCode string) (TokenCreated, error)
	Login(ctx context.Context, c Caller, user string, password, pin []byte, code, emergencyCode string) (SessionView, error)
	Logout(ctx context.Context, c Caller) error
	Session(ctx context.Context, c Caller) (SessionView, error)
	ListTokens(ctx context.Context, c Caller) ([]TokenView, error)
	CreateToken(ctx context.Context, c Caller, pin []byte) (TokenCreated, error)
	RevokeToken(ctx context.Context, c Caller, id string) error
	SetPIN(ctx context.Context, c Caller, id string, pin []byte) error
	RequestICE(ctx context.Context, c Caller, user string, password []byte, answers [3][]byte) (ICEResponse, error)
	ChangePassword(ctx context.Context, c Caller, current, pin []byte, code string, newPassword []byte) error
	SetQuestions(ctx context.Context, c Caller, password, pin []byte, code string, qs [3]Question) error
}

// Question is a security question with its answer as the daemon receives it.
type Question struct {
	Question string
	Answer   []byte
}

// secrets copies strings into byte slices and wipes them all when done. Go strings cannot
// be wiped; the copies the daemon works on can.
type secrets [][]byte

func (s *secrets) b(v string) []byte {
	b := []byte(v)
	*s = append(*s, b)
	return b
}

// questions copies the answers of qs into slices wiped with the rest.
func (s *secrets) questions(qs [3]SecurityQuestion) [3]Question {
	var out [3]Question
	for i, q := range qs {
		out[i] = Question{Question: q.Question, Answer: s.b(q.Answer)}
	}
	return out
}

// wipe has a pointer receiver so that `defer sec.wipe()` sees the slices added after it.
func (s *secrets) wipe() {
	for _, b := range *s {
		clear(b)
	}
}

func (s *Server) tokenRoutes(d Tokens) {
	post(s, PathEnrolmentCode, func(ctx context.Context, c Caller, req UserRef) (any, error) {
		return d.EnrolmentCode(ctx, c, req.ID)
	})
	post(s, PathEnrol, func(ctx context.Context, c Caller, req EnrolRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return d.Enrol(ctx, c, req.Code, sec.b(req.Password), sec.b(req.PIN), sec.questions(req.Questions), req.TokenCode)
	})
	post(s, PathLogin, func(ctx context.Context, c Caller, req LoginRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return d.Login(ctx, c, req.User, sec.b(req.Password), sec.b(req.PIN), req.Code, req.EmergencyCode)
	})
	s.handle(http.MethodPost, PathLogout, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		if err := decode(r, nil); err != nil {
			return nil, err
		}
		return nil, d.Logout(ctx, c)
	})
	get(s, PathSession, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		return d.Session(ctx, c)
	})
	get(s, PathTokens, func(ctx context.Context, c Caller, r *http.Request) (any, error) {
		toks, err := d.ListTokens(ctx, c)
		return TokensResponse{Tokens: nonNil(toks)}, err
	})
	post(s, PathTokenCreate, func(ctx context.Context, c Caller, req PINRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return d.CreateToken(ctx, c, sec.b(req.PIN))
	})
	post(s, PathTokenRevoke, func(ctx context.Context, c Caller, req TokenRef) (any, error) {
		return nil, d.RevokeToken(ctx, c, req.ID)
	})
	post(s, PathTokenSetPIN, func(ctx context.Context, c Caller, req PINRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return nil, d.SetPIN(ctx, c, req.ID, sec.b(req.PIN))
	})
	post(s, PathICE, func(ctx context.Context, c Caller, req ICERequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		var answers [3][]byte
		for i, a := range req.Answers {
			answers[i] = sec.b(a)
		}
		return d.RequestICE(ctx, c, req.User, sec.b(req.Password), answers)
	})
	post(s, PathPasswd, func(ctx context.Context, c Caller, req PasswdRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return nil, d.ChangePassword(ctx, c, sec.b(req.Current), sec.b(req.PIN), req.Code, sec.b(req.New))
	})
	post(s, PathQuestions, func(ctx context.Context, c Caller, req QuestionsRequest) (any, error) {
		var sec secrets
		defer sec.wipe()
		return nil, d.SetQuestions(ctx, c, sec.b(req.Password), sec.b(req.PIN), req.Code, sec.questions(req.Questions))
	})
}
