// Command terminal chats with any AI Chat Protocol endpoint from a terminal,
// through the chatproto client: type a line, watch the answer stream in.
//
// Start the example app in demo mode, then the client:
//
//	go run ./examples/chatapp -demo
//	go run ./examples/terminal -endpoint http://127.0.0.1:8080/chat
//
// The conversation is kept and sent with every question, with the session
// state the server last returned. Ctrl-C stops an answer; at the prompt, it
// (or Ctrl-D, or an empty line) ends the program.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/aoaiblocks/securechat/chatproto"
)

func main() {
	endpoint := flag.String("endpoint", "http://127.0.0.1:8080/chat",
		"the chat endpoint; streamed answers come from it with /stream appended")
	flag.Parse()

	client := chatproto.NewClient(*endpoint, nil)
	if err := chat(context.Background(), client, os.Stdin, os.Stdout, interrupts()); err != nil {
		fmt.Fprintf(os.Stderr, "terminal: %v\n", err)
		os.Exit(1)
	}
}

// interrupts delivers a value for every Ctrl-C.
func interrupts() <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	out := make(chan struct{})
	go func() {
		for range sig {
			out <- struct{}{}
		}
	}()
	return out
}

// chat reads questions from in, one a line, and writes each streamed answer
// to out. A value on interrupt stops the answer in progress, or ends the chat
// when none is.
func chat(ctx context.Context, client *chatproto.Client, in io.Reader, out io.Writer,
	interrupt <-chan struct{}) error {
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	var req chatproto.Request
	for {
		fmt.Fprint(out, "> ")
		var question string
		var ok bool
		select {
		case question, ok = <-lines:
		case <-interrupt:
		}
		question = strings.TrimSpace(question)
		if !ok || question == "" {
			fmt.Fprintln(out)
			return nil
		}

		req.Messages = append(req.Messages, chatproto.Message{
			Role: chatproto.RoleUser, Content: question,
		})
		answer, err := ask(ctx, client, &req, out, interrupt)
		fmt.Fprintln(out)
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(out, "(stopped)")
		case err != nil:
			fmt.Fprintf(out, "(error: %v)\n", err)
		}
		if answer == "" {
			// Nothing came back: forget the question, so it does not stand
			// unanswered in the conversation.
			req.Messages = req.Messages[:len(req.Messages)-1]
			continue
		}
		req.Messages = append(req.Messages, chatproto.Message{
			Role: chatproto.RoleAssistant, Content: answer,
		})
	}
}

// ask streams the answer to req onto out and returns its text. The session
// state of the answer's lines replaces req's.
func ask(ctx context.Context, client *chatproto.Client, req *chatproto.Request, out io.Writer,
	interrupt <-chan struct{}) (string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-interrupt:
			cancel()
		case <-stop:
		}
	}()

	var answer strings.Builder
	for d, err := range client.Stream(ctx, req) {
		if err != nil {
			return answer.String(), err
		}
		if d.SessionState != nil {
			req.SessionState = d.SessionState
		}
		answer.WriteString(d.Delta.Content)
		fmt.Fprint(out, d.Delta.Content)
	}
	return answer.String(), nil
}
