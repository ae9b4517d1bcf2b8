package listener_test

import (
	"errors"
	"fmt"

	"github.com/orgperm/orgperm/pkg/listener"
)

func ExampleParsePayload() {
	inv, err := listener.ParsePayload(`{"v":1,"t":"memberships","members":[["acme","alice"]]}`)
	fmt.Println(inv.Source, inv.Members, err)

	inv, err = listener.ParsePayload(`{"v":1,"t":"evict","all":true}`)
	fmt.Println(inv.Source, inv.All, err)

	_, err = listener.ParsePayload(`{"v":2,"all":true}`)
	fmt.Println(errors.Is(err, listener.ErrUnsupportedVersion))

	_, err = listener.ParsePayload(`garbage`)
	fmt.Println(errors.Is(err, listener.ErrMalformedPayload), err)
	// Output:
	// memberships [{acme alice}] <nil>
	// evict true <nil>
	// true
	// true listener: malformed payload: not a JSON object (at byte 0)
}
