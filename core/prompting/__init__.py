"""The prompt before it is encoded: the deny-list that takes names and brands out, the prompt
assistant that turns a few words into a described background, and the generation's stage that
runs them."""
