#!/usr/bin/env python3
"""Deterministic generator of simple English children's stories (the `tiny` model's corpus).

Every word, name and sentence pattern below was written for tritium, so the corpus and
everything generated from it are ours to give away: CC0-1.0 (public domain dedication).

Each story is one paragraph of 3 to 8 sentences that begins "Once upon a time";
stories are separated by a blank line. The same seed always gives the same text
(only Python's ``random.Random`` is used, whose ``choice``/``random`` sequences are
stable across Python 3 releases). The training split and the held-out split come from
different seeds, so held-out stories are new draws from the same distribution.

    python tools/make_corpus.py --split heldout --out host/data/tiny_heldout.txt
    python tools/make_corpus.py --split train --bytes 8000000 --out /tmp/tiny_train.txt

Import use: ``generate(seed, n_bytes)`` returns the text.
"""

import argparse
import random
import sys

__all__ = ["generate", "generate_story", "SEEDS", "vocabulary"]

# Seeds of the two splits. Never change them: the shipped held-out file and the shipped
# model's documented numbers depend on them.
SEEDS = {"train": 20240601, "heldout": 777001}
DEFAULT_BYTES = {"train": 8_000_000, "heldout": 40_000}

GIRLS = ["Lily", "Mia", "Anna", "Sue", "Lucy", "Zoe", "Emma", "Rose", "Ella", "Kate",
         "Amy", "Nina", "Sara", "Ruby", "Jane", "Molly", "Daisy", "Lola"]
BOYS = ["Tom", "Max", "Ben", "Sam", "Tim", "Jack", "Leo", "Finn", "Jim", "Bob",
        "Dan", "Joe", "Ned", "Oscar", "Pete", "Toby", "Ray", "Eli"]
CHILD_KINDS = {"she": ["girl", "little girl"], "he": ["boy", "little boy"]}
ANIMALS = ["cat", "dog", "bunny", "bear", "duck", "fox", "mouse", "frog", "pig", "owl",
           "puppy", "kitten", "lion", "bird"]
KIND_ADJS = ["little", "small", "happy", "kind", "brave", "curious", "shy", "funny",
             "friendly", "clever", "silly", "gentle"]
HOMES = ["in a small house", "in a big red house", "near the woods", "by the sea",
         "on a farm", "in a quiet town", "next to a river", "in a cozy little home",
         "at the top of a hill", "in a busy city"]
SETTINGS = ["a small town", "a green forest", "a quiet village", "a sunny valley",
            "a big city", "a little village by the sea", "a land far away"]
PLACES = ["park", "garden", "forest", "beach", "lake", "hill", "field", "river",
          "playground", "farm", "market", "zoo", "meadow"]
COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "orange", "white", "brown",
          "black"]
OBJ_ADJS = ["shiny", "soft", "big", "little", "new", "old", "pretty", "round", "tiny"]
OBJECTS = ["ball", "kite", "hat", "toy car", "teddy bear", "doll", "boat", "book",
           "drum", "box", "shell", "scarf", "balloon", "train", "robot", "cup", "bell",
           "blanket", "crayon", "truck"]
FOODS = ["cake", "cookies", "pie", "soup", "bread", "muffins", "pancakes"]
FRUITS = ["apple", "banana", "pear", "orange", "plum", "peach"]
ACTIVITIES = ["play outside", "run and jump", "sing songs", "draw pictures",
              "read books", "dance", "climb trees", "look at the stars", "build things",
              "pick flowers", "splash in puddles", "help people", "swim in the lake",
              "play games with friends", "fly kites"]
FEEL_GOOD = ["happy", "glad", "excited", "proud", "joyful", "thankful"]
FEEL_BAD = ["sad", "upset", "worried", "lonely", "grumpy", "scared"]
GROWNUPS = ["Mom", "Dad", "Grandma", "Grandpa", "Aunt May", "Uncle Bill"]
HIDING = ["under a bush", "behind a big rock", "in the tall grass", "under the bed",
          "next to a tree", "inside an old box", "by the gate", "under a pile of leaves",
          "behind the door", "near the pond"]
WEATHER_GOOD = ["sunny", "bright", "warm", "lovely", "beautiful"]
TIMES = ["One day", "One morning", "One sunny day", "One afternoon", "One evening",
         "The next day", "One warm day", "One cold morning"]
ENDINGS_FRIENDS = ["From that day on, {a} and {b} were best friends.",
                   "{A} and {b} played together until the sun went down.",
                   "After that, {a} and {b} always played together.",
                   "{A} and {b} laughed and had a great day."]
FEARS = [("the dark", "the night light glowed softly"),
         ("the big thunder", "the storm went away"),
         ("the deep water", "{he} could float and kick"),
         ("the tall slide", "it was fast and fun"),
         ("the loud dog next door", "the dog only wanted to play"),
         ("the noises in the night", "it was only the wind")]
HURT_ANIMALS = [("bird", "wing"), ("kitten", "paw"), ("puppy", "leg"), ("duck", "foot"),
                ("bunny", "ear"), ("squirrel", "tail")]
FOUND_THINGS = ["a shiny key", "a tiny door", "an old map", "a golden coin",
                "a little box", "a magic stone", "a secret path", "a nest of eggs"]
SEEDS_PLANTS = [("seed", "a big sunflower"), ("seed", "a tall tree"),
                ("bean", "a long green vine"), ("seed", "a pretty red rose"),
                ("seed", "a little apple tree")]
GIFTS = ["a drawing", "a card", "some flowers", "a little song", "a paper crown",
         "a small cake", "a pretty stone"]
SOUNDS = {"cat": "meow", "dog": "woof", "puppy": "woof", "kitten": "meow", "duck": "quack",
          "frog": "ribbit", "pig": "oink", "owl": "hoot", "bird": "tweet", "lion": "roar",
          "bear": "grr", "mouse": "squeak", "bunny": "sniff", "fox": "yip"}


class Key(str):
    """A sentence the story needs (later sentences refer to it): never dropped."""


def cap(text):
    return text[:1].upper() + text[1:]


def a_an(word):
    return ("an " if word[0] in "aeiou" else "a ") + word


class Character:
    def __init__(self, rng, exclude=()):
        self.he = rng.choice(["he", "she"])
        names = GIRLS if self.he == "she" else BOYS
        self.name = rng.choice([n for n in names if n not in exclude])
        self.his = "her" if self.he == "she" else "his"
        self.him = "her" if self.he == "she" else "him"
        if rng.random() < 0.6:
            self.kind = rng.choice(CHILD_KINDS[self.he])
            self.animal = None
        else:
            self.kind = self.animal = rng.choice(ANIMALS)
        self.adj = rng.choice(KIND_ADJS)

    def fill(self, text, **more):
        """Fill {name} {he} {his} {him} {He} {His} and extra fields."""
        fields = {"name": self.name, "he": self.he, "his": self.his, "him": self.him,
                  "He": cap(self.he), "His": cap(self.his), "kind": self.kind}
        fields.update(more)
        return text.format(**fields)


def obj_phrase(rng):
    r = rng.random()
    obj = rng.choice(OBJECTS)
    if r < 0.4:
        return f"{rng.choice(COLORS)} {obj}"
    if r < 0.7:
        return f"{rng.choice(OBJ_ADJS)} {obj}"
    return obj


def say(rng, who, words, verb="said"):
    """A line of dialogue in one of three shapes."""
    shape = rng.random()
    if words.endswith("?"):
        verb = "asked"
    if shape < 0.45:
        if words[-1] == ".":
            words = words[:-1] + ","
        return f'"{words}" {verb} {who}.'
    if shape < 0.8:
        return f'{who} {verb}, "{words}"'
    if words[-1] == ".":
        words = words[:-1] + ","
    return f'"{words}" {who} {verb}.'


def intro(rng, c):
    form = rng.randrange(5)
    kind = f"{c.adj} {c.kind}" if rng.random() < 0.7 else c.kind
    if form == 0:
        return f"Once upon a time, there was {a_an(kind)} named {c.name}."
    if form == 1:
        return (f"Once upon a time, in {rng.choice(SETTINGS)}, there lived "
                f"{a_an(kind)} named {c.name}.")
    if form == 2:
        return f"Once upon a time, {a_an(kind)} named {c.name} lived {rng.choice(HOMES)}."
    if form == 3:
        return [f"Once upon a time, there was {a_an(kind)}.", c.fill("{His} name was {name}.")]
    return f"Once upon a time, {c.name} the {c.kind} lived {rng.choice(HOMES)}."


def trait(rng, c):
    form = rng.randrange(4)
    if form == 0:
        return c.fill("{He} loved to {act}.", act=rng.choice(ACTIVITIES))
    if form == 1:
        return c.fill("Every day, {he} liked to go to the {p} and {act}.",
                      p=rng.choice(PLACES), act=rng.choice(ACTIVITIES))
    if form == 2:
        return c.fill("{He} was always {f} and liked to {act}.",
                      f=rng.choice(["happy", "busy", "kind", "curious", "cheerful"]),
                      act=rng.choice(ACTIVITIES))
    return c.fill("{name} had many friends and loved to {act}.", act=rng.choice(ACTIVITIES))


def friend_of(rng, c):
    return Character(rng, exclude=(c.name,))


def friend_intro(c, f):
    if f.animal:
        return f"{f.name} the {f.animal}"
    return f.name


def story_lost(rng, c):
    obj = obj_phrase(rng)
    place = rng.choice(PLACES)
    f = friend_of(rng, c)
    hide = rng.choice(HIDING)
    s = [Key(c.fill("{name} had {o} that {he} loved very much.", o=a_an(obj)))]
    s.append(c.fill("{t}, {he} took the {o} to the {p}.", t=rng.choice(TIMES), o=obj, p=place))
    s.append(Key(rng.choice([
        c.fill("When it was time to go home, {he} could not find {his} {o}.", o=obj),
        c.fill("{He} played and played, and then the {o} was gone.", o=obj),
        c.fill("But the wind blew, and the {o} was lost.", o=obj)])))
    s.append(c.fill("{name} felt very {f}.", f=rng.choice(FEEL_BAD)))
    if rng.random() < 0.7:
        s.append(say(rng, c.name, rng.choice([f"Where is my {obj}?", f"I lost my {obj}!",
                                              "Can anyone help me?"])))
    s.append(Key(f"{friend_intro(c, f)} came and said, \"I will help you look.\""))
    s.append(Key(f"They looked everywhere, and at last they found the {obj} {hide}."))
    s.append(say(rng, c.name, rng.choice([f"Thank you, {f.name}!", "You are a good friend.",
                                          "Now I am happy again!"])))
    if rng.random() < 0.6:
        a, b = c.name, f.name
        s.append(rng.choice(ENDINGS_FRIENDS).format(a=a, A=a, b=b))
    return s


def story_share(rng, c):
    obj = obj_phrase(rng)
    f = friend_of(rng, c)
    s = [c.fill("{name} got {o} from {g}.", o=a_an(obj), g=rng.choice(GROWNUPS))]
    s.append(c.fill("{He} played with it all day at the {p}.", p=rng.choice(PLACES)))
    s.append(Key(f"{friend_intro(c, f)} saw the {obj} and wanted to play too."))
    s.append(say(rng, f.name, f"Can I play with your {obj}?"))
    s.append(rng.choice([say(rng, c.name, f"No, it is my {obj}!"),
                         c.fill("But {name} did not want to share.")]))
    s.append(f.fill("{name} was {sad} and walked away.", sad=rng.choice(FEEL_BAD)))
    s.append(c.fill("Then {name} felt bad, so {he} ran after {f}.", f=f.name))
    s.append(say(rng, c.name, "I am sorry. We can play together."))
    s.append(rng.choice(["They took turns and had lots of fun.",
                         "Playing together was more fun than playing alone.",
                         f"{c.name} learned that sharing makes everyone happy."]))
    return s


def story_fear(rng, c):
    fear, calm = rng.choice(FEARS)
    g = rng.choice(GROWNUPS)
    s = [Key(c.fill("{name} was scared of {x}.", x=fear))]
    if rng.random() < 0.5:
        s.append(c.fill("Every night, {he} hid under {his} blanket."))
    s.append(say(rng, c.name, f"I do not like {fear}!"))
    s.append(c.fill("{g} sat down next to {him} and held {his} hand.", g=g))
    s.append(say(rng, g, rng.choice(["Do not be afraid. I am here with you.",
                                     "You are braver than you think.",
                                     "Let us be brave together."])))
    s.append(c.fill("{name} took a deep breath and saw that " + calm + "."))
    s.append(c.fill("{He} was not scared anymore and felt very {f}.", f=rng.choice(FEEL_GOOD)))
    return s


def story_animal(rng, c):
    animal, part = rng.choice(HURT_ANIMALS)
    place = rng.choice(PLACES)
    g = rng.choice(GROWNUPS)
    s = [c.fill("{t}, {name} went for a walk to the {p}.", t=rng.choice(TIMES), p=place)]
    s.append(Key(f"There {c.he} saw a little {animal} with a hurt {part}."))
    s.append(say(rng, c.name, f"Poor little {animal}! I will help you."))
    s.append(c.fill("{He} took the {a} home and showed it to {g}.", a=animal, g=g))
    s.append(f"{g} helped {c.him} put a soft cloth on its {part}.")
    s.append(c.fill("Every day, {name} gave the {a} food and water.", a=animal))
    s.append(rng.choice([f"Soon the {animal} was well again and it was time to say goodbye.",
                         f"After a few days, the {animal} could run and play again."]))
    s.append(c.fill("{name} felt {f} because {he} had helped a friend.",
                    f=rng.choice(FEEL_GOOD)))
    return s


def story_bake(rng, c):
    food = rng.choice(FOODS)
    g = rng.choice(GROWNUPS)
    fruit = rng.choice(FRUITS)
    s = [c.fill("{t}, {name} wanted to make {f} with {g}.", t=rng.choice(TIMES), f=food, g=g)]
    fruits = fruit + "s" if food in ("pancakes", "cookies", "muffins") else a_an(fruit)
    s.append(f"They went to the kitchen and got flour, sugar, eggs and {fruits}.")
    s.append(c.fill("{name} mixed everything in a big bowl."))
    if rng.random() < 0.6:
        s.append(c.fill("Oh no, {he} spilled the flour all over the floor!"))
        s.append(say(rng, g, "That is okay. We can clean it up together."))
    s.append(Key(f"Soon the {food} came out of the oven and the house smelled so good."))
    s.append(say(rng, c.name, rng.choice([f"This is the best {food} ever!", "Yum, yum, yum!",
                                          "Can I have some more, please?"])))
    s.append(rng.choice([c.fill("{name} and {g} ate together and were very {f}.", g=g,
                                f=rng.choice(FEEL_GOOD)),
                         c.fill("{He} shared the {food} with all {his} friends.", food=food)]))
    return s


def story_explore(rng, c):
    f = friend_of(rng, c)
    place = rng.choice(["forest", "hill", "beach", "field", "garden", "meadow"])
    thing = rng.choice(FOUND_THINGS)
    s = [c.fill("{t}, {name} and {f} went to explore the {p}.", t=rng.choice(TIMES),
                f=friend_intro(c, f), p=place)]
    s.append(f"The sky was {rng.choice(WEATHER_GOOD)} and the birds were singing.")
    s.append(Key(f"They walked and walked until they found {thing} {rng.choice(HIDING)}."))
    s.append(say(rng, f.name, rng.choice(["What is that?", "Look at this!", "Wow, how pretty!"])))
    s.append(c.fill("{name} picked it up and looked at it for a long time."))
    s.append(rng.choice(["It was the most wonderful thing they had ever seen.",
                         "They decided to keep it as their special secret.",
                         f"They took it home to show {rng.choice(GROWNUPS)}."]))
    s.append(rng.choice(ENDINGS_FRIENDS).format(a=c.name, A=c.name, b=f.name))
    return s


def story_race(rng, c):
    f = friend_of(rng, c)
    goal = rng.choice(["the big tree", "the red gate", "the old barn", "the pond",
                       "the top of the hill"])
    s = [c.fill("{t}, {name} and {f} were playing at the {p}.", t=rng.choice(TIMES),
                f=friend_intro(c, f), p=rng.choice(PLACES))]
    s.append(Key(say(rng, f.name, f"Let us race to {goal}!")))
    s.append("They ran as fast as they could.")
    s.append(Key(c.fill("But {name} fell down and hurt {his} knee.")))
    s.append(f.fill("{name} stopped and came back to help."))
    s.append(say(rng, f.name, "Are you okay? We can walk together."))
    s.append(rng.choice([f"They walked to {goal} side by side and laughed.",
                         "Winning was not important, because being friends was more fun."]))
    return s


def story_rain(rng, c):
    g = rng.choice(GROWNUPS)
    s = [c.fill("{t}, {name} wanted to go to the {p}, but it was raining.",
                t=rng.choice(TIMES), p=rng.choice(PLACES))]
    s.append(c.fill("{He} looked out of the window and felt {f}.", f=rng.choice(FEEL_BAD)))
    s.append(say(rng, g, rng.choice(["Let us build a fort with blankets!",
                                     "We can read a book together.",
                                     "How about we draw some pictures?"])))
    s.append(c.fill("So {name} and {g} had fun inside all afternoon.", g=g))
    s.append(Key("Then the rain stopped and the sun came out."))
    s.append(rng.choice([c.fill("{name} saw a big rainbow in the sky!"),
                         c.fill("{name} ran outside to jump in the puddles.")]))
    s.append(say(rng, c.name, "What a wonderful day!"))
    return s


def story_gift(rng, c):
    f = friend_of(rng, c)
    gift = rng.choice(GIFTS)
    s = [c.fill("{t}, it was {f}'s birthday.", t=rng.choice(TIMES), f=f.name)]
    s.append(c.fill("{name} wanted to give {f} something special.", f=f.name))
    s.append(Key(c.fill("{He} did not have any money, so {he} made {g}.", g=gift)))
    s.append(c.fill("{He} was worried that {f} would not like it.", f=f.name))
    s.append(f"But when {f.name} saw the gift, {f.he} smiled a big smile.")
    s.append(say(rng, f.name, rng.choice(["I love it! Thank you!",
                                          "This is the best gift ever!",
                                          "You made this for me?"])))
    s.append(c.fill("{name} felt warm and {f} inside.", f=rng.choice(FEEL_GOOD)))
    return s


def story_plant(rng, c):
    seed, grown = rng.choice(SEEDS_PLANTS)
    s = [c.fill("{t}, {g} gave {name} a little {s}.", t=rng.choice(TIMES),
                g=rng.choice(GROWNUPS), s=seed)]
    s.append(Key(c.fill("{name} planted the {s} in the garden and gave it water.", s=seed)))
    s.append(c.fill("Every day, {he} looked at the ground, but nothing grew."))
    s.append(say(rng, c.name, rng.choice(["When will it grow?", "Why is it so slow?"])))
    s.append(say(rng, rng.choice(GROWNUPS), rng.choice(["Be patient, and keep giving it water.",
                                                        "Good things take time."])))
    s.append(c.fill("One morning, {name} saw a tiny green leaf."))
    s.append(Key(f"Soon it grew into {grown}."))
    s.append(c.fill("{name} was so {f} that {he} danced around the garden.",
                    f=rng.choice(FEEL_GOOD)))
    return s


def story_sound(rng, c):
    """An animal friend makes its sound; simple, repetitive, good for small models."""
    animal = rng.choice(sorted(SOUNDS))
    sound = SOUNDS[animal]
    s = [c.fill("{t}, {name} heard a funny sound near the {p}.", t=rng.choice(TIMES),
                p=rng.choice(PLACES))]
    s.append(f'"{cap(sound)}! {cap(sound)}!" went the sound.')
    s.append(Key(c.fill("{name} looked {w} and found a little {a}.",
                    w=rng.choice(["around", "behind a tree", "under a bush", "in the grass"]),
                    a=animal)))
    s.append(say(rng, c.name, f"Hello, little {animal}! Do you want to be my friend?"))
    s.append(f'The {animal} said "{sound}" again and wagged its tail.' if animal in
             ("dog", "puppy", "fox") else f'The {animal} said "{sound}" again and came closer.')
    s.append(c.fill("From that day on, {name} and the {a} played together every day.",
                    a=animal))
    return s


TEMPLATES = [story_lost, story_share, story_fear, story_animal, story_bake, story_explore,
             story_race, story_rain, story_gift, story_plant, story_sound]


def generate_story(rng) -> str:
    c = Character(rng)
    body = rng.choice(TEMPLATES)(rng, c)
    head = intro(rng, c)
    head = head if isinstance(head, list) else [head]
    if rng.random() < 0.5:
        head.append(trait(rng, c))
    # Keep the paragraph to 3..8 sentences (an entry of `body` is one sentence, or one
    # sentence of dialogue with its speaker): drop from the middle of the body when long.
    limit = rng.randint(4, 8)
    if rng.random() < 0.15:
        body.append("The end.")
    while len(head) + len(body) > limit:
        optional = [i for i in range(1, len(body) - 1) if not isinstance(body[i], Key)]
        if not optional:
            break
        del body[rng.choice(optional)]
    return " ".join(head + body)


def generate(seed: int, n_bytes: int) -> str:
    """Whole stories separated by blank lines, until at least ``n_bytes`` of UTF-8."""
    rng = random.Random(seed)
    stories, total = [], 0
    while total < n_bytes:
        story = generate_story(rng)
        stories.append(story)
        total += len(story) + 2
    return "\n\n".join(stories) + "\n"


def vocabulary(text: str) -> set:
    words = set()
    for token in text.replace("\n", " ").split():
        word = token.strip('.,!?"\'').lower()
        if word.endswith("'s"):
            word = word[:-2]
        if word:
            words.add(word)
    return words


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=sorted(SEEDS), default="heldout")
    parser.add_argument("--seed", type=int, default=None,
                        help="override the split's seed")
    parser.add_argument("--bytes", type=int, default=None,
                        help="minimum size (default: 8 MB train, 40 KB held-out)")
    parser.add_argument("--out", default="-", help="output file ('-' for stdout)")
    parser.add_argument("--stats", action="store_true", help="print size and vocabulary")
    args = parser.parse_args(argv)
    seed = SEEDS[args.split] if args.seed is None else args.seed
    n_bytes = DEFAULT_BYTES[args.split] if args.bytes is None else args.bytes
    text = generate(seed, n_bytes)
    if args.out == "-":
        sys.stdout.write(text)
    else:
        with open(args.out, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    if args.stats:
        stories = text.count("\n\n") + 1
        print(f"{len(text.encode())} bytes, {stories} stories, "
              f"{len(vocabulary(text))} distinct words", file=sys.stderr)


if __name__ == "__main__":
    main()
