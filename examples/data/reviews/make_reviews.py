#!/usr/bin/env python3
# Copyright the xft authors. Licensed under the Apache License, Version 2.0.
"""Generate the xft multilingual product-review sentiment sample data set.

The reviews are composed from hand-written building blocks for each language:
product nouns (with grammatical gender where the language needs it), aspect
clauses grouped by product category and polarity, overall verdicts per label,
label-neutral context sentences and sentence templates with native connectors.
All text was written for xft; nothing is copied from an existing data set.

Labels: ``negative``, ``neutral``, ``positive``. The label of a review is the
label of its overall verdict; mixed reviews ("X is great, but Y is bad") always
end with an explicit verdict, so the label stays unambiguous.

Usage::

    python make_reviews.py            # (re)write <lang>.{train,dev,test}.jsonl here
    python make_reviews.py --check    # only validate the existing files

The output is fully determined by ``SEED``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

SEED = 20240521
LABELS = ("negative", "neutral", "positive")
# Per label and language: train / dev / test sizes (x3 labels = 201 / 51 / 60).
SPLIT_SIZES = {"train": 67, "dev": 17, "test": 20}
LANGS = ("en", "de", "es", "zh")

# How often one building block may be reused within a language.
CAP_ASPECT = 5
CAP_VERDICT = 9
CAP_CONTEXT = 10
# Near-duplicate rejection (token-set Jaccard and overlap coefficient).
MAX_JACCARD = 0.6
MAX_OVERLAP = 0.85

# ---------------------------------------------------------------------------
# Building blocks
#
# aspects[category][aspect] is a list of clauses; the first character marks
# the polarity: "+" positive, "-" negative, "0" neutral/descriptive.
# Clauses are written in the form they take inside a sentence (lower-case
# start unless the language requires a capital); the generator capitalises
# them at the start of a sentence. Placeholders in braces are filled from the
# product (noun, gender-dependent articles/pronouns/endings).
#
# Naming the product: in many reviews the first aspect clause names the
# product instead of referring to it implicitly (see ``mention``). English
# replaces the first "it" with "the <product>", German the first {er}/{ihn}
# with "der/den <Produkt>"; Spanish and Chinese clauses whose subject is the
# product are marked with "@" after the polarity sign, and get "el/la
# <producto>" or "这款<产品>" put in front.
# ---------------------------------------------------------------------------

EN = {
    "products": {
        "gadgets": ["portable speaker", "smartwatch", "fitness tracker", "e-reader",
                    "wireless mouse", "wireless keyboard"],
        "kitchen": ["kettle", "toaster", "blender", "coffee grinder", "waffle maker",
                    "rice cooker"],
        "clothing": ["rain jacket", "hoodie", "wool sweater", "winter coat",
                     "fleece jacket", "flannel shirt"],
        "furniture": ["office chair", "bookshelf", "standing desk", "bed frame",
                      "TV stand", "shoe rack"],
        "bags": ["backpack", "laptop bag", "duffel bag", "gym bag", "camera bag",
                 "messenger bag"],
    },
    "aspects": {
        "gadgets": {
            "battery": [
                "+the battery easily lasts two full days",
                "+it charges from empty to full in about an hour",
                "-the battery is dead by lunchtime",
                "-the battery life has already dropped noticeably after a few weeks",
                "0the battery lasts about a day, as advertised",
            ],
            "connection": [
                "+it paired with my phone in seconds",
                "+the Bluetooth connection hasn't dropped once",
                "-the connection cuts out several times a day",
                "-I have to pair it again every time I switch it on",
                "0it only connects via Bluetooth",
            ],
            "setup": [
                "+setting it up took less than five minutes",
                "+the companion app is clean and easy to use",
                "-the app crashes constantly",
                "-the setup instructions are confusing and skip half the steps",
                "0you need the manufacturer's app to change most of the settings",
            ],
            "build": [
                "+it feels solid and well made",
                "+it has survived a couple of drops without a scratch",
                "-the casing creaks when you press on it",
                "-one of the buttons stopped working after three weeks",
                "0the casing is matte black plastic",
            ],
            "size": [
                "+it is light enough to take anywhere",
                "+it is much more compact than my old one",
                "-it is bulkier than the photos suggest",
                "-it is surprisingly heavy for its size",
                "0it is about the size I expected",
            ],
        },
        "kitchen": {
            "performance": [
                "+it is ready to go in a matter of seconds",
                "+the results are consistently good",
                "-the results are hit and miss",
                "-it takes forever to do anything",
                "0it takes about as long as my old one did",
            ],
            "noise": [
                "+it isn't loud at all",
                "+it is quiet enough to use early in the morning without waking anyone",
                "-it is incredibly loud",
                "-it makes a rattling noise that gets worse every week",
                "0it makes about as much noise as you would expect",
            ],
            "cleaning": [
                "+cleaning it takes less than a minute",
                "+everything wipes clean without any effort",
                "-cleaning it is a real chore",
                "-there are corners you simply can't reach to clean",
                "0the removable parts have to be washed by hand",
            ],
            "build": [
                "+it feels sturdy and nothing wobbles",
                "+the stainless steel finish still looks new after months",
                "-the plastic feels thin and cheap",
                "-a plastic clip snapped off within the first month",
                "0it is mostly plastic with a few metal parts",
            ],
            "controls": [
                "+the controls are simple and clearly labelled",
                "+you can figure out every setting without opening the manual",
                "-the buttons are confusing and badly labelled",
                "-the dial is stiff and hard to turn",
                "0there are only two settings",
            ],
        },
        "clothing": {
            "fit": [
                "+it is true to size and the fit is perfect",
                "+it fits like it was made for me",
                "-it runs at least one size too small",
                "-the sleeves are far too long and the shoulders are too tight",
                "0it fits as expected in my usual size",
            ],
            "fabric": [
                "+the fabric is soft and feels expensive",
                "+the material breathes well even on warm days",
                "-the fabric is scratchy and uncomfortable",
                "-the material is so thin you can almost see through it",
                "0the fabric is a cotton and polyester blend",
            ],
            "washing": [
                "+it still looks brand new after a dozen washes",
                "+it didn't shrink at all in the wash",
                "-it shrank a full size after the first wash",
                "-it started pilling after only two washes",
                "0the label says to wash it cold and let it air dry",
            ],
            "colour": [
                "+the colour is even nicer in person",
                "+the colour hasn't faded one bit",
                "-the colour looks nothing like the photos",
                "-the dye ran and stained the rest of my laundry",
                "0the colour is a little darker than in the photos",
            ],
            "stitching": [
                "+the stitching is neat and even everywhere",
                "+the seams are nicely finished and there isn't a loose thread anywhere",
                "-loose threads were hanging off it straight out of the bag",
                "-a seam came apart the second time I wore it",
                "0the stitching is nothing out of the ordinary",
            ],
        },
        "furniture": {
            "assembly": [
                "+assembly took twenty minutes and every screw was there",
                "+the assembly instructions are clear and easy to follow",
                "-putting it together took me a whole afternoon",
                "-two of the pre-drilled holes didn't line up",
                "0assembly took about an hour with two people",
            ],
            "stability": [
                "+it is rock solid once it's put together",
                "+it doesn't wobble even on my uneven floor",
                "-it wobbles no matter how much I tighten the screws",
                "-it already leans to one side",
                "0it is stable enough as long as you don't overload it",
            ],
            "look": [
                "+it looks much more expensive than it was",
                "+it looks great in our living room",
                "-the finish looks cheap up close",
                "-the wood effect is obviously just a printed sticker",
                "0the finish is plain white and fairly simple",
            ],
            "materials": [
                "+the wood is solid and heavy",
                "+the materials are better than I expected at this price",
                "-it is mostly cheap chipboard that chips at the edges",
                "-the surface scratches far too easily",
                "0it is made of chipboard with a laminate surface",
            ],
            "size": [
                "+it fits perfectly in the spot we had planned for it",
                "+the dimensions are just right for our small flat",
                "-it is much smaller than the listed dimensions suggest",
                "-it is far too bulky for a normal-sized room",
                "0it is exactly the size stated in the listing",
            ],
        },
        "bags": {
            "space": [
                "+there is a pocket for everything",
                "+it holds far more than you would think",
                "-there is hardly any room inside",
                "-the inner pockets are too small to be useful",
                "0it has one main compartment and two side pockets",
            ],
            "zips": [
                "+the zips run smoothly and feel sturdy",
                "+the zips haven't snagged once",
                "-one of the zips broke in the first week",
                "-the zips keep catching on the lining",
                "0the zips are the standard plastic kind",
            ],
            "straps": [
                "+the straps are well padded and comfortable even when it's full",
                "+the straps stay put on my shoulders",
                "-the straps dig into my shoulders",
                "-a strap came loose after a month",
                "0the straps are adjustable",
            ],
            "material": [
                "+my things stayed completely dry in a downpour",
                "+the material is tough and easy to wipe clean",
                "-it is not waterproof at all, whatever the listing says",
                "-the material scuffs and frays very quickly",
                "0the material is a fairly thin nylon",
            ],
            "weight": [
                "+it weighs next to nothing",
                "+it stays light even when packed",
                "-it is heavy even when it's empty",
                "-it is far too heavy for what it is",
                "0it weighs a little under a kilo",
            ],
        },
        "general": {
            "delivery": [
                "+it arrived two days earlier than promised",
                "+delivery was quick and the courier was friendly",
                "-it arrived more than a week late",
                "-it was delivered to the wrong address first",
                "0delivery took about five days",
            ],
            "packaging": [
                "+it was packed carefully and arrived in perfect condition",
                "+the packaging was minimal and fully recyclable",
                "-the box was crushed and one corner was damaged",
                "-it came in a huge box with far too much plastic",
                "0it came in a plain cardboard box",
            ],
            "price": [
                "+it cost half as much as the brand-name version",
                "+for the price you really can't complain",
                "-it is overpriced for what you get",
                "-it costs twice as much as similar products",
                "0I paid the regular price for it",
            ],
            "seller": [
                "+the seller answered my question within an hour",
                "+customer service sent a missing part without any fuss",
                "-customer service never replied to my emails",
                "-the seller took two weeks to answer a simple question",
                "0I haven't had to contact customer service so far",
            ],
        },
    },
    "verdicts": {
        "positive": [
            "Really happy with this {p}.",
            "Would definitely buy it again.",
            "Highly recommended!",
            "Best {p} I've owned so far.",
            "Not bad at all for the price.",
            "I can't find anything to complain about.",
            "Worth every penny.",
            "The whole family loves it.",
            "Exactly what I was looking for.",
            "Five stars, no hesitation.",
            "I've already ordered another one as a gift.",
            "Honestly better than I expected.",
            "I'd recommend this {p} to anyone.",
            "No regrets at all.",
            "Overall, a great buy.",
            "I use it every day now.",
        ],
        "negative": [
            "Very disappointed with this {p}.",
            "I'm sending it back.",
            "Save your money and buy something else.",
            "Not worth the money.",
            "I would not recommend this {p} to anyone.",
            "One star, and that's generous.",
            "A complete waste of money.",
            "I regret buying it.",
            "Not at all what I expected, and not in a good way.",
            "Easily the worst {p} I've ever bought.",
            "I won't be buying from this brand again.",
            "Avoid!",
            "Don't make the same mistake I did.",
            "Not recommended.",
            "I expected a lot more for this price.",
            "Definitely not a good buy.",
        ],
        "neutral": [
            "It does what it says, but nothing special.",
            "An average {p} for an average price.",
            "Neither great nor terrible.",
            "It's okay, I suppose.",
            "Three stars: fine, but nothing to get excited about.",
            "Hard to say yet whether it will last.",
            "It works, and that's about all I can say.",
            "Not bad, not great.",
            "I'm keeping it for now, but I'm not thrilled.",
            "Overall a fairly ordinary {p}.",
            "It's fine for occasional use.",
            "I have mixed feelings about it.",
            "Perfectly adequate, nothing more.",
            "Whether it's worth it depends on what you need.",
            "I'll update this review in a few months.",
            "It's decent enough, but I'm not blown away.",
        ],
    },
    "contexts": [
        "I bought this for our new flat.",
        "I've been using it for about three weeks now.",
        "Ordered it during a sale.",
        "I needed a replacement for my old one.",
        "I picked this one after reading a lot of reviews.",
        "We use it almost every day.",
        "My wife chose this one.",
        "This was my first order from this shop.",
        "I've had it for two months.",
        "A colleague recommended it to me.",
    ],
    "templates": {
        "positive": [
            (3, "{P1^}. {V}"),
            (2, "{P1^}, and {P2}. {V}"),
            (1, "{P1^} and {P2}."),
            (2, "{C} {P1^}. {V}"),
            (3, "{N1^}, but {P1}. {V}"),
            (2, "{V} {P1^}."),
            (1, "{V} {P1^}, and {P2}."),
            (1, "{Z1^}. {V}"),
        ],
        "negative": [
            (3, "{N1^}. {V}"),
            (2, "{N1^}, and {N2}. {V}"),
            (1, "{N1^} and {N2}."),
            (2, "{C} {N1^}. {V}"),
            (3, "{P1^}, but {N1}. {V}"),
            (2, "{V} {N1^}."),
            (1, "{V} {N1^}, and {N2}."),
            (1, "{Z1^}. {V}"),
        ],
        "neutral": [
            (3, "{Z1^}. {V}"),
            (3, "{P1^}, but {N1}. {V}"),
            (3, "{N1^}, but {P1}. {V}"),
            (2, "{C} {Z1^}. {V}"),
            (1, "{Z1^}, and {Z2}."),
            (1, "{V} {Z1^}."),
            (1, "{Z1^}, and {Z2}. {V}"),
            (1, "{C} {Z1^}, and {Z2}."),
        ],
    },
}

# German: gender m/f/n drives the placeholders (see DE_FORMS).
DE = {
    "products": {
        "gadgets": [("Lautsprecher", "m"), ("Smartwatch", "f"),
                    ("Fitnesstracker", "m"), ("E-Reader", "m"), ("Computermaus", "f"),
                    ("Tastatur", "f")],
        "kitchen": [("Wasserkocher", "m"), ("Toaster", "m"), ("Standmixer", "m"),
                    ("Kaffeemühle", "f"), ("Waffeleisen", "n"), ("Reiskocher", "m")],
        "clothing": [("Regenjacke", "f"), ("Hoodie", "m"), ("Strickpullover", "m"),
                     ("Wintermantel", "m"), ("Fleecejacke", "f"), ("Flanellhemd", "n")],
        "furniture": [("Bürostuhl", "m"), ("Bücherregal", "n"), ("Stehschreibtisch", "m"),
                      ("Bettgestell", "n"), ("TV-Lowboard", "n"), ("Schuhregal", "n")],
        "bags": [("Rucksack", "m"), ("Laptoptasche", "f"), ("Reisetasche", "f"),
                 ("Sporttasche", "f"), ("Kameratasche", "f"), ("Umhängetasche", "f")],
    },
    "aspects": {
        "gadgets": {
            "battery": [
                "+der Akku hält locker zwei volle Tage",
                "+in gut einer Stunde ist der Akku wieder voll",
                "-der Akku ist schon mittags leer",
                "-die Akkulaufzeit hat nach ein paar Wochen schon merklich nachgelassen",
                "0der Akku hält ungefähr einen Tag, so wie angegeben",
            ],
            "connection": [
                "+die Kopplung mit dem Handy hat nur ein paar Sekunden gedauert",
                "+die Bluetooth-Verbindung ist noch kein einziges Mal abgebrochen",
                "-die Verbindung bricht mehrmals am Tag ab",
                "-nach jedem Einschalten muss ich {ihn} neu koppeln",
                "0{er} verbindet sich nur per Bluetooth",
            ],
            "setup": [
                "+die Einrichtung hat keine fünf Minuten gedauert",
                "+die dazugehörige App ist übersichtlich und leicht zu bedienen",
                "-die App stürzt ständig ab",
                "-die Anleitung ist verwirrend und lässt die Hälfte der Schritte aus",
                "0für die meisten Einstellungen braucht man die App des Herstellers",
            ],
            "build": [
                "+{er} wirkt hochwertig und ist sauber verarbeitet",
                "+{er} hat schon ein paar Stürze ohne einen Kratzer überstanden",
                "-das Gehäuse knarzt, wenn man draufdrückt",
                "-eine der Tasten funktioniert nach drei Wochen nicht mehr",
                "0das Gehäuse ist aus mattschwarzem Kunststoff",
            ],
            "size": [
                "+{er} ist so leicht, dass man {ihn} überallhin mitnehmen kann",
                "+{er} ist viel kompakter als mein altes Modell",
                "-{er} ist klobiger, als die Fotos vermuten lassen",
                "-für die Größe ist {er} erstaunlich schwer",
                "0die Größe entspricht ungefähr meinen Erwartungen",
            ],
        },
        "kitchen": {
            "performance": [
                "+{er} ist innerhalb von Sekunden einsatzbereit",
                "+die Ergebnisse sind jedes Mal gleichmäßig gut",
                "-die Ergebnisse schwanken stark",
                "-{er} braucht für alles eine halbe Ewigkeit",
                "0{er} braucht ungefähr so lange wie mein altes Gerät",
            ],
            "noise": [
                "+{er} ist überhaupt nicht laut",
                "+{er} ist so leise, dass man {ihn} frühmorgens benutzen kann, ohne jemanden zu wecken",
                "-{er} ist unglaublich laut",
                "-{er} macht ein klapperndes Geräusch, das jede Woche schlimmer wird",
                "0die Lautstärke ist ungefähr so, wie man es erwartet",
            ],
            "cleaning": [
                "+die Reinigung dauert keine Minute",
                "+alles lässt sich mühelos abwischen",
                "-die Reinigung ist eine echte Qual",
                "-an manche Ecken kommt man beim Putzen einfach nicht ran",
                "0die abnehmbaren Teile müssen von Hand gespült werden",
            ],
            "build": [
                "+{er} steht stabil und nichts wackelt",
                "+das Edelstahlgehäuse sieht auch nach Monaten noch wie neu aus",
                "-der Kunststoff fühlt sich dünn und billig an",
                "-schon im ersten Monat ist ein Plastikclip abgebrochen",
                "0{er} besteht größtenteils aus Kunststoff mit ein paar Metallteilen",
            ],
            "controls": [
                "+die Bedienung ist simpel und die Tasten sind klar beschriftet",
                "+man versteht alle Einstellungen, ohne in die Anleitung zu schauen",
                "-die Tasten sind verwirrend und schlecht beschriftet",
                "-der Drehregler ist schwergängig",
                "0es gibt nur zwei Stufen",
            ],
        },
        "clothing": {
            "fit": [
                "+die Passform ist perfekt, {er} fällt genau normal aus",
                "+{er} sitzt wie maßgeschneidert",
                "-{er} fällt mindestens eine Nummer zu klein aus",
                "-die Ärmel sind viel zu lang und an den Schultern ist {er} zu eng",
                "0in meiner üblichen Größe passt {er} so, wie erwartet",
            ],
            "fabric": [
                "+der Stoff ist weich und fühlt sich hochwertig an",
                "+das Material ist auch an warmen Tagen angenehm atmungsaktiv",
                "-der Stoff kratzt und ist unangenehm auf der Haut",
                "-das Material ist so dünn, dass es fast durchsichtig ist",
                "0der Stoff ist eine Mischung aus Baumwolle und Polyester",
            ],
            "washing": [
                "+auch nach zehn Wäschen sieht {er} noch aus wie neu",
                "+{er} ist in der Wäsche überhaupt nicht eingelaufen",
                "-nach der ersten Wäsche ist {er} eine ganze Nummer eingelaufen",
                "-schon nach zwei Wäschen hatten sich Knötchen gebildet",
                "0laut Etikett soll man {ihn} kalt waschen und an der Luft trocknen lassen",
            ],
            "colour": [
                "+in echt ist die Farbe sogar noch schöner",
                "+die Farbe ist kein bisschen verblasst",
                "-die Farbe hat mit den Fotos nichts zu tun",
                "-{er} hat abgefärbt und meine restliche Wäsche verfärbt",
                "0die Farbe ist etwas dunkler als auf den Fotos",
            ],
            "stitching": [
                "+die Nähte sind überall sauber und gleichmäßig",
                "+alles ist ordentlich versäubert, nirgends hängt ein Faden heraus",
                "-schon beim Auspacken hingen überall lose Fäden heraus",
                "-beim zweiten Tragen ist eine Naht aufgegangen",
                "0die Nähte sind nichts Besonderes",
            ],
        },
        "furniture": {
            "assembly": [
                "+der Aufbau hat zwanzig Minuten gedauert und alle Schrauben waren dabei",
                "+die Aufbauanleitung ist klar und leicht verständlich",
                "-der Aufbau hat mich einen ganzen Nachmittag gekostet",
                "-zwei der vorgebohrten Löcher passten nicht zusammen",
                "0zu zweit hat der Aufbau etwa eine Stunde gedauert",
            ],
            "stability": [
                "+einmal aufgebaut steht {er} bombenfest",
                "+selbst auf meinem unebenen Boden wackelt nichts",
                "-{er} wackelt, egal wie fest ich die Schrauben anziehe",
                "-{er} steht jetzt schon schief",
                "0{er} ist stabil genug, solange man {ihn} nicht überlädt",
            ],
            "look": [
                "+{er} sieht viel teurer aus, als {er} war",
                "+in unserem Wohnzimmer sieht {er} richtig gut aus",
                "-aus der Nähe wirkt die Oberfläche billig",
                "-die Holzoptik ist ganz offensichtlich nur eine aufgedruckte Folie",
                "0die Oberfläche ist schlicht weiß gehalten",
            ],
            "materials": [
                "+das Holz ist massiv und schwer",
                "+die Materialien sind für den Preis besser als erwartet",
                "-{er} besteht größtenteils aus billiger Spanplatte, die an den Kanten absplittert",
                "-die Oberfläche verkratzt, wenn man sie nur schief anschaut",
                "0{er} ist aus Spanplatte mit einer Laminatoberfläche",
            ],
            "size": [
                "+{er} passt perfekt an die Stelle, die wir dafür vorgesehen hatten",
                "+für unsere kleine Wohnung hat {er} genau die richtigen Maße",
                "-{er} ist deutlich kleiner, als die angegebenen Maße vermuten lassen",
                "-für ein normales Zimmer ist {er} viel zu wuchtig",
                "0die Maße stimmen genau mit der Beschreibung überein",
            ],
        },
        "bags": {
            "space": [
                "+es gibt für alles ein eigenes Fach",
                "+es passt viel mehr hinein, als man denkt",
                "-innen ist kaum Platz",
                "-die Innenfächer sind zu klein, um wirklich nützlich zu sein",
                "0{er} hat ein Hauptfach und zwei Seitentaschen",
            ],
            "zips": [
                "+die Reißverschlüsse laufen leicht und wirken robust",
                "+die Reißverschlüsse haben noch kein einziges Mal gehakt",
                "-schon in der ersten Woche ist ein Reißverschluss kaputtgegangen",
                "-die Reißverschlüsse verhaken sich ständig im Futter",
                "0die Reißverschlüsse sind ganz normale aus Kunststoff",
            ],
            "straps": [
                "+die Gurte sind gut gepolstert und auch voll beladen bequem",
                "+die Träger rutschen nicht von den Schultern",
                "-die Träger schneiden in die Schultern ein",
                "-nach einem Monat hat sich ein Gurt gelöst",
                "0die Gurte lassen sich in der Länge verstellen",
            ],
            "material": [
                "+bei einem Wolkenbruch ist drinnen alles komplett trocken geblieben",
                "+das Material ist robust und lässt sich leicht abwischen",
                "-{er} ist überhaupt nicht wasserdicht, auch wenn das in der Beschreibung steht",
                "-das Material scheuert schnell durch und franst aus",
                "0das Material ist ein relativ dünnes Nylon",
            ],
            "weight": [
                "+{er} wiegt so gut wie nichts",
                "+auch voll bepackt ist {er} noch leicht",
                "-schon leer ist {er} ziemlich schwer",
                "-für das, was {er} ist, ist {er} viel zu schwer",
                "0{er} wiegt knapp ein Kilo",
            ],
        },
        "general": {
            "delivery": [
                "+die Lieferung kam zwei Tage früher als angekündigt",
                "+die Lieferung ging schnell und der Bote war freundlich",
                "-die Lieferung kam über eine Woche zu spät",
                "-das Paket wurde zuerst an die falsche Adresse geliefert",
                "0die Lieferung hat etwa fünf Tage gedauert",
            ],
            "packaging": [
                "+{er} war sorgfältig verpackt und kam in einwandfreiem Zustand an",
                "+die Verpackung war minimal und komplett recycelbar",
                "-der Karton war eingedrückt und an einer Ecke beschädigt",
                "-{er} kam in einem riesigen Karton mit viel zu viel Plastik",
                "0{er} kam in einem schlichten Pappkarton",
            ],
            "price": [
                "+{er} hat nur halb so viel gekostet wie das Markenprodukt",
                "+für den Preis kann man wirklich nicht meckern",
                "-für das, was man bekommt, ist {er} überteuert",
                "-{er} kostet doppelt so viel wie vergleichbare Produkte",
                "0ich habe den regulären Preis bezahlt",
            ],
            "seller": [
                "+der Verkäufer hat meine Frage innerhalb einer Stunde beantwortet",
                "+der Kundendienst hat ein fehlendes Teil problemlos nachgeschickt",
                "-der Kundendienst hat auf keine meiner E-Mails reagiert",
                "-der Verkäufer hat zwei Wochen gebraucht, um eine einfache Frage zu beantworten",
                "0mit dem Kundendienst hatte ich bisher nichts zu tun",
            ],
        },
    },
    "verdicts": {
        "positive": [
            "Ich bin mit {diesem} {p} rundum zufrieden.",
            "Würde ich jederzeit wieder kaufen.",
            "Klare Kaufempfehlung!",
            "{der} beste {p}, {den} ich bisher hatte.",
            "Für den Preis wirklich nicht schlecht.",
            "Ich habe nichts zu meckern.",
            "Jeden Cent wert.",
            "Die ganze Familie ist begeistert.",
            "Genau das, was ich gesucht habe.",
            "Fünf Sterne, ohne Wenn und Aber.",
            "Ich habe gleich noch {eins} als Geschenk bestellt.",
            "Ehrlich gesagt besser als erwartet.",
            "Ich kann {diesen} {p} nur empfehlen.",
            "Ich bereue den Kauf kein bisschen.",
            "Alles in allem ein super Kauf.",
            "Ich benutze {ihn} inzwischen jeden Tag.",
        ],
        "negative": [
            "Ich bin von {diesem} {p} sehr enttäuscht.",
            "Geht zurück.",
            "Spart euch das Geld und kauft lieber etwas anderes.",
            "Das Geld nicht wert.",
            "{diesen} {p} kann ich leider nicht empfehlen.",
            "Ein Stern, und das ist noch großzügig.",
            "Rausgeschmissenes Geld.",
            "Ich bereue den Kauf.",
            "Ganz und gar nicht das, was ich erwartet hatte.",
            "Mit Abstand {der} schlechteste {p}, {den} ich je gekauft habe.",
            "Von dieser Marke kaufe ich nichts mehr.",
            "Finger weg!",
            "Macht nicht denselben Fehler wie ich.",
            "Keine Empfehlung.",
            "Für diesen Preis hätte ich deutlich mehr erwartet.",
            "Definitiv kein guter Kauf.",
        ],
        "neutral": [
            "Tut, was {er} soll, mehr aber auch nicht.",
            "{ein} durchschnittlich{adj} {p} zum durchschnittlichen Preis.",
            "Weder besonders gut noch richtig schlecht.",
            "Ganz okay, würde ich sagen.",
            "Drei Sterne: in Ordnung, aber nichts Besonderes.",
            "Ob {er} lange hält, kann ich noch nicht sagen.",
            "{er} funktioniert, mehr gibt es dazu nicht zu sagen.",
            "Nicht schlecht, aber auch nicht toll.",
            "Ich behalte {ihn} erst mal, begeistert bin ich aber nicht.",
            "Insgesamt {ein} ziemlich gewöhnlich{adj} {p}.",
            "Für den gelegentlichen Gebrauch reicht es.",
            "Ich habe gemischte Gefühle.",
            "Zweckmäßig, mehr nicht.",
            "Ob sich der Kauf lohnt, hängt davon ab, was man braucht.",
            "In ein paar Monaten gibt es von mir noch ein Update.",
            "Ganz ordentlich, aber vom Hocker haut {er} mich nicht.",
        ],
    },
    "contexts": [
        "Für die neue Wohnung gekauft.",
        "Ich benutze {ihn} jetzt seit etwa drei Wochen.",
        "Im Angebot gekauft.",
        "Ich brauchte Ersatz für mein altes Modell.",
        "Nach dem Lesen vieler Bewertungen bestellt.",
        "Wir benutzen {ihn} fast täglich.",
        "Meine Frau hat {ihn} ausgesucht.",
        "Das war meine erste Bestellung in diesem Shop.",
        "Ich habe {ihn} seit zwei Monaten.",
        "Ein Kollege hat {ihn} mir empfohlen.",
    ],
    "templates": {
        "positive": [
            (3, "{P1^}. {V}"),
            (2, "{P1^} und {P2}. {V}"),
            (1, "{P1^} und {P2}."),
            (2, "{C} {P1^}. {V}"),
            (3, "{N1^}, aber {P1}. {V}"),
            (2, "{V} {P1^}."),
            (1, "{V} {P1^} und {P2}."),
            (1, "{Z1^}. {V}"),
        ],
        "negative": [
            (3, "{N1^}. {V}"),
            (2, "{N1^} und {N2}. {V}"),
            (1, "{N1^} und {N2}."),
            (2, "{C} {N1^}. {V}"),
            (3, "{P1^}, aber {N1}. {V}"),
            (2, "{V} {N1^}."),
            (1, "{V} {N1^} und {N2}."),
            (1, "{Z1^}. {V}"),
        ],
        "neutral": [
            (3, "{Z1^}. {V}"),
            (3, "{P1^}, aber {N1}. {V}"),
            (3, "{N1^}, aber {P1}. {V}"),
            (2, "{C} {Z1^}. {V}"),
            (1, "{Z1^} und {Z2}."),
            (1, "{V} {Z1^}."),
            (1, "{Z1^} und {Z2}. {V}"),
            (1, "{C} {Z1^} und {Z2}."),
        ],
    },
}

DE_FORMS = {
    #      der    den    diesem    diesen    er     ihn    ein     eins     adj
    "m": ("der", "den", "diesem", "diesen", "er", "ihn", "ein", "einen", "er"),
    "f": ("die", "die", "dieser", "diese", "sie", "sie", "eine", "eine", "e"),
    "n": ("das", "das", "diesem", "dieses", "es", "es", "ein", "eins", "es"),
}

ES = {
    "products": {
        "gadgets": [("altavoz portátil", "m"), ("reloj inteligente", "m"),
                    ("pulsera de actividad", "f"), ("lector de libros electrónicos", "m"),
                    ("ratón inalámbrico", "m"), ("teclado inalámbrico", "m")],
        "kitchen": [("hervidor de agua", "m"), ("tostadora", "f"), ("batidora de vaso", "f"),
                    ("molinillo de café", "m"), ("gofrera", "f"), ("arrocera", "f")],
        "clothing": [("chubasquero", "m"), ("sudadera con capucha", "f"),
                     ("jersey de lana", "m"), ("abrigo de invierno", "m"),
                     ("forro polar", "m"), ("camisa de franela", "f")],
        "furniture": [("silla de oficina", "f"), ("estantería", "f"),
                      ("escritorio elevable", "m"), ("cama de matrimonio", "f"),
                      ("mueble para la tele", "m"), ("zapatero", "m")],
        "bags": [("mochila", "f"), ("maletín para portátil", "m"), ("bolsa de viaje", "f"),
                 ("bolsa de deporte", "f"), ("bolsa para la cámara", "f"), ("bandolera", "f")],
    },
    "aspects": {
        "gadgets": {
            "battery": [
                "+la batería aguanta dos días enteros sin problema",
                "+@se carga por completo en más o menos una hora",
                "-a mediodía ya se ha quedado sin batería",
                "-la batería ha empeorado muchísimo en pocas semanas",
                "0la batería dura aproximadamente un día, como indica el fabricante",
            ],
            "connection": [
                "+@se emparejó con el móvil en cuestión de segundos",
                "+la conexión Bluetooth no se ha cortado ni una sola vez",
                "-la conexión se corta varias veces al día",
                "-cada vez que {lo} enciendo tengo que volver a emparejar{lo}",
                "0@solo se conecta por Bluetooth",
            ],
            "setup": [
                "+configurar{lo} me llevó menos de cinco minutos",
                "+la aplicación es clara y muy fácil de usar",
                "-la aplicación se cuelga continuamente",
                "-las instrucciones son confusas y se saltan la mitad de los pasos",
                "0para cambiar casi todos los ajustes hace falta la aplicación del fabricante",
            ],
            "build": [
                "+@se nota robust{o} y bien acabad{o}",
                "+se me ha caído un par de veces y ni un rasguño",
                "-la carcasa cruje cuando la aprietas",
                "-uno de los botones dejó de funcionar a las tres semanas",
                "0la carcasa es de plástico negro mate",
            ],
            "size": [
                "+@es tan liger{o} que {lo} llevo a todas partes",
                "+@es mucho más compact{o} que {el} que tenía antes",
                "-@es más voluminos{o} de lo que parece en las fotos",
                "-@pesa muchísimo para lo pequeñ{o} que es",
                "0el tamaño es más o menos el que esperaba",
            ],
        },
        "kitchen": {
            "performance": [
                "+@está list{o} para usar en cuestión de segundos",
                "+el resultado es bueno siempre, sin sorpresas",
                "-el resultado es muy irregular: unas veces bien y otras fatal",
                "-@tarda una eternidad en hacer cualquier cosa",
                "0@tarda más o menos lo mismo que {el} que tenía antes",
            ],
            "noise": [
                "+@no hace nada de ruido",
                "+@es tan silencios{o} que se puede usar de madrugada sin despertar a nadie",
                "-@hace un ruido infernal",
                "-@hace un traqueteo que va a peor cada semana",
                "0hace el ruido normal para este tipo de aparato",
            ],
            "cleaning": [
                "+limpiar{lo} lleva menos de un minuto",
                "+@se limpia con una bayeta sin ningún esfuerzo",
                "-limpiar{lo} es un auténtico suplicio",
                "-@tiene recovecos imposibles de limpiar",
                "0las piezas desmontables hay que lavarlas a mano",
            ],
            "build": [
                "+@es robust{o} y no se mueve nada",
                "+el acabado de acero inoxidable sigue como nuevo después de meses",
                "-el plástico parece fino y barato",
                "-una pestaña de plástico se partió en el primer mes",
                "0@es casi todo de plástico, con alguna pieza metálica",
            ],
            "controls": [
                "+los botones son sencillos y están bien indicados",
                "+se entiende todo sin necesidad de mirar el manual",
                "-los botones son confusos y no se sabe qué hace cada uno",
                "-el mando giratorio va durísimo",
                "0@solo tiene dos posiciones",
            ],
        },
        "clothing": {
            "fit": [
                "+la talla es perfecta, tal cual",
                "+@me queda como hech{o} a medida",
                "-@viene muy pequeñ{o}, hay que pedir al menos una talla más",
                "-las mangas son larguísimas y me queda estrech{o} de hombros",
                "0con mi talla de siempre me queda como esperaba",
            ],
            "fabric": [
                "+el tejido es suave y se nota de calidad",
                "+el tejido transpira bien incluso cuando hace calor",
                "-el tejido pica y resulta incómodo",
                "-la tela es tan fina que casi se transparenta",
                "0la tela es una mezcla de algodón y poliéster",
            ],
            "washing": [
                "+después de diez lavados sigue como nuev{o}",
                "+@no ha encogido nada al lavar{lo}",
                "-@encogió una talla entera en el primer lavado",
                "-le salieron bolitas después de solo dos lavados",
                "0según la etiqueta hay que lavar{lo} en frío y secar{lo} al aire",
            ],
            "colour": [
                "+el color es todavía más bonito en persona",
                "+el color no ha perdido nada de intensidad",
                "-el color no se parece en nada al de las fotos",
                "-@destiñó y me manchó el resto de la ropa",
                "0el color es algo más oscuro que en las fotos",
            ],
            "stitching": [
                "+las costuras están impecables",
                "+@está muy bien rematad{o} y no hay ni un hilo suelto",
                "-nada más sacar{lo} de la bolsa ya tenía hilos sueltos por todas partes",
                "-se descosió una costura la segunda vez que me {lo} puse",
                "0las costuras son normales, sin más",
            ],
        },
        "furniture": {
            "assembly": [
                "+el montaje me llevó veinte minutos y no faltaba ni un tornillo",
                "+las instrucciones de montaje son claras y fáciles de seguir",
                "-montar{lo} me llevó una tarde entera",
                "-dos de los agujeros no coincidían",
                "0entre dos personas tardamos más o menos una hora en montar{lo}",
            ],
            "stability": [
                "+una vez montad{o} es firme como una roca",
                "+@no cojea ni siquiera en mi suelo, que está desnivelado",
                "-@se tambalea por mucho que apriete los tornillos",
                "-@ya se ha empezado a torcer hacia un lado",
                "0@es bastante estable siempre que no {lo} cargues demasiado",
            ],
            "look": [
                "+@parece mucho más car{o} de lo que es",
                "+@queda precios{o} en el salón",
                "-de cerca el acabado se ve barato",
                "-el efecto madera es claramente un vinilo pegado",
                "0el acabado es blanco y bastante sencillo",
            ],
            "materials": [
                "+la madera es maciza y pesada",
                "+los materiales son mejores de lo que esperaba por este precio",
                "-@es casi todo aglomerado barato que se desconcha por los bordes",
                "-la superficie se raya con solo mirarla",
                "0@es de aglomerado con superficie laminada",
            ],
            "size": [
                "+@encaja perfectamente en el hueco que teníamos pensado",
                "+las medidas son perfectas para nuestro piso pequeño",
                "-@es mucho más pequeñ{o} de lo que indican las medidas",
                "-@es demasiado grande para una habitación normal",
                "0las medidas coinciden exactamente con la descripción",
            ],
        },
        "bags": {
            "space": [
                "+@tiene un bolsillo para cada cosa",
                "+cabe muchísimo más de lo que parece",
                "-@apenas tiene espacio dentro",
                "-los bolsillos interiores son demasiado pequeños para servir de algo",
                "0@tiene un compartimento principal y dos bolsillos laterales",
            ],
            "zips": [
                "+las cremalleras corren bien y parecen resistentes",
                "+las cremalleras no se han enganchado ni una vez",
                "-una de las cremalleras se rompió la primera semana",
                "-las cremalleras se enganchan con el forro constantemente",
                "0las cremalleras son de plástico, de las normales",
            ],
            "straps": [
                "+las correas están bien acolchadas y son cómodas incluso con peso",
                "+las correas no se resbalan de los hombros",
                "-las correas se clavan en los hombros",
                "-una correa se soltó al mes",
                "0las correas son regulables",
            ],
            "material": [
                "+con un chaparrón tremendo todo quedó completamente seco por dentro",
                "+el material es resistente y se limpia fácilmente",
                "-@no es nada impermeable, a pesar de lo que dice la descripción",
                "-el material se desgasta y se deshilacha enseguida",
                "0el material es un nailon bastante fino",
            ],
            "weight": [
                "+@no pesa casi nada",
                "+incluso llen{o} sigue siendo liger{o}",
                "-@pesa mucho incluso vací{o}",
                "-@es demasiado pesad{o} para lo que es",
                "0@pesa algo menos de un kilo",
            ],
        },
        "general": {
            "delivery": [
                "+@llegó dos días antes de lo previsto",
                "+el envío fue rapidísimo y el repartidor muy amable",
                "-@llegó con más de una semana de retraso",
                "-primero {lo} entregaron en una dirección equivocada",
                "0el envío tardó unos cinco días",
            ],
            "packaging": [
                "+@venía muy bien embalad{o} y llegó en perfecto estado",
                "+el embalaje era mínimo y totalmente reciclable",
                "-la caja llegó aplastada y con una esquina rota",
                "-@venía en una caja enorme con muchísimo plástico",
                "0venía en una caja de cartón normal",
            ],
            "price": [
                "+@costó la mitad que {el} de marca",
                "+por ese precio no se le puede pedir más",
                "-@es demasiado car{o} para lo que ofrece",
                "-@cuesta el doble que otros productos parecidos",
                "0{lo} compré a precio normal",
            ],
            "seller": [
                "+el vendedor respondió a mi pregunta en menos de una hora",
                "+atención al cliente me envió una pieza que faltaba sin ningún problema",
                "-atención al cliente nunca contestó a mis correos",
                "-el vendedor tardó dos semanas en responder a una pregunta sencilla",
                "0de momento no he tenido que contactar con atención al cliente",
            ],
        },
    },
    "verdicts": {
        "positive": [
            "Estoy encantad{ro} con {este} {p}.",
            "{lo} volvería a comprar sin dudarlo.",
            "¡Totalmente recomendable!",
            "{el} mejor {p} que he tenido hasta ahora.",
            "Para lo que cuesta, no está nada mal.",
            "No le encuentro ninguna pega.",
            "Vale hasta el último euro.",
            "A toda la familia le encanta.",
            "Justo lo que buscaba.",
            "Cinco estrellas sin dudarlo.",
            "Ya he pedido otr{o} para regalar.",
            "Sinceramente, mejor de lo que esperaba.",
            "Recomiendo {este} {p} a cualquiera.",
            "No me arrepiento para nada de la compra.",
            "En resumen, una compra estupenda.",
            "Ya {lo} uso a diario.",
        ],
        "negative": [
            "Muy decepcionad{ro} con {este} {p}.",
            "{lo} devuelvo.",
            "Ahórrate el dinero y compra otra cosa.",
            "No vale lo que cuesta.",
            "No recomendaría {este} {p} a nadie.",
            "Una estrella, y porque no se puede poner cero.",
            "Dinero tirado a la basura.",
            "Me arrepiento de haber{lo} comprado.",
            "Nada que ver con lo que esperaba.",
            "Sinceramente, {el} peor {p} que he comprado nunca.",
            "No volveré a comprar nada de esta marca.",
            "¡No {lo} compres!",
            "No cometas el mismo error que yo.",
            "No {lo} recomiendo.",
            "Por este precio esperaba mucho más.",
            "Sin duda, una mala compra.",
        ],
        "neutral": [
            "Cumple su función, pero nada más.",
            "{un} {p} normal y corriente a un precio normal.",
            "Ni muy bien ni muy mal.",
            "Está bien, supongo.",
            "Tres estrellas: correct{o}, pero nada del otro mundo.",
            "Todavía no sé si aguantará mucho tiempo.",
            "Funciona, y poco más puedo decir.",
            "Ni fu ni fa.",
            "De momento me {lo} quedo, pero no me entusiasma.",
            "En general, {un} {p} del montón.",
            "Para un uso ocasional, sirve.",
            "Tengo sentimientos encontrados.",
            "Correct{o}, sin más.",
            "Que merezca la pena o no depende de lo que necesites.",
            "Actualizaré la reseña dentro de unos meses.",
            "Está bien, pero no me ha impresionado.",
        ],
    },
    "contexts": [
        "{lo} compré para el piso nuevo.",
        "Llevo unas tres semanas usándo{lo}.",
        "{lo} compré en oferta.",
        "Necesitaba sustituir {el} que tenía.",
        "Me decidí después de leer muchas opiniones.",
        "En casa {lo} usamos casi a diario.",
        "{lo} eligió mi pareja.",
        "Era mi primer pedido en esta tienda.",
        "{lo} tengo desde hace dos meses.",
        "Me {lo} recomendó un compañero de trabajo.",
    ],
    "templates": {
        "positive": [
            (3, "{P1^}. {V}"),
            (2, "{P1^}; además, {P2}. {V}"),
            (1, "{P1^} y, además, {P2}."),
            (2, "{C} {P1^}. {V}"),
            (2, "{N1^}, pero {P1}. {V}"),
            (1, "{N1^}; eso sí, {P1}. {V}"),
            (2, "{V} {P1^}."),
            (1, "{V} {P1^} y {P2}."),
            (1, "{Z1^}. {V}"),
        ],
        "negative": [
            (3, "{N1^}. {V}"),
            (2, "{N1^}; además, {N2}. {V}"),
            (1, "{N1^} y, además, {N2}."),
            (2, "{C} {N1^}. {V}"),
            (3, "{P1^}, pero {N1}. {V}"),
            (2, "{V} {N1^}."),
            (1, "{V} {N1^} y {N2}."),
            (1, "{Z1^}. {V}"),
        ],
        "neutral": [
            (3, "{Z1^}. {V}"),
            (3, "{P1^}, pero {N1}. {V}"),
            (3, "{N1^}, pero {P1}. {V}"),
            (2, "{C} {Z1^}. {V}"),
            (1, "{Z1^} y {Z2}."),
            (1, "{V} {Z1^}."),
            (1, "{Z1^} y {Z2}. {V}"),
            (1, "{C} {Z1^} y {Z2}."),
        ],
    },
}

ES_FORMS = {
    #      el    este    un     lo    o
    "m": ("el", "este", "un", "lo", "o"),
    "f": ("la", "esta", "una", "la", "a"),
}

ZH = {
    "products": {
        "gadgets": ["便携音箱", "智能手表", "运动手环", "电子书阅读器", "无线鼠标", "无线键盘"],
        "kitchen": ["电热水壶", "烤面包机", "料理机", "磨豆机", "华夫饼机", "电饭煲"],
        "clothing": ["防水外套", "连帽卫衣", "羊毛衫", "羽绒服", "抓绒外套", "法兰绒衬衫"],
        "furniture": ["办公椅", "书架", "升降桌", "床架", "电视柜", "鞋架"],
        "bags": ["双肩包", "电脑包", "旅行袋", "健身包", "相机包", "斜挎包"],
    },
    "aspects": {
        "gadgets": {
            "battery": [
                "+@电池能撑整整两天",
                "+@充满电只要一个小时左右",
                "-中午电量就用光了",
                "-才用了几个星期，续航就明显下降了",
                "0续航大概一天，和宣传的差不多",
            ],
            "connection": [
                "+和手机配对几秒钟就搞定了",
                "+蓝牙连接一次都没断过",
                "-@一天要断连好几次",
                "-每次开机都得重新配对",
                "0@只支持蓝牙连接",
            ],
            "setup": [
                "+不到五分钟就设置好了",
                "+配套的App简洁好用",
                "-App老是闪退",
                "-说明书写得乱七八糟，还漏了好几步",
                "0大部分设置都要通过官方App来改",
            ],
            "build": [
                "+@做工扎实，拿在手里很有质感",
                "+摔过几次，一点划痕都没有",
                "-@外壳一按就咯吱响",
                "-用了三个星期就有个按键失灵了",
                "0外壳是哑光黑色塑料",
            ],
            "size": [
                "+@很轻，走到哪儿都能带着",
                "+@比我以前那个小巧多了",
                "-@实物比照片上看起来笨重",
                "-个头不大，却沉得出奇",
                "0大小和我预想的差不多",
            ],
        },
        "kitchen": {
            "performance": [
                "+几秒钟就能开始用",
                "+每次效果都很稳定",
                "-@效果时好时坏",
                "-@干什么都慢得要命",
                "0用时和我之前那台差不多",
            ],
            "noise": [
                "+@声音一点都不大",
                "+@很安静，大清早用也不会吵醒家人",
                "-@噪音大得吓人",
                "-有咔哒咔哒的异响，而且一周比一周严重",
                "0噪音跟同类产品差不多",
            ],
            "cleaning": [
                "+清洗不到一分钟就搞定",
                "+随手一擦就干净了",
                "-@清洗起来特别麻烦",
                "-有好几个死角根本清洗不到",
                "0可拆卸的部件需要手洗",
            ],
            "build": [
                "+@很结实，放在台面上一点都不晃",
                "+不锈钢外壳用了几个月还跟新的一样",
                "-@塑料又薄又廉价",
                "-第一个月就断了一个塑料卡扣",
                "0大部分是塑料的，有少量金属部件",
            ],
            "controls": [
                "+按键简单，标识清楚",
                "+不用看说明书也知道怎么用",
                "-按键标识混乱，根本看不懂",
                "-旋钮特别紧，很难拧",
                "0@只有两个档位",
            ],
        },
        "clothing": {
            "fit": [
                "+@尺码很标准，穿着刚刚好",
                "+穿上就像量身定做的一样",
                "-@尺码偏小，至少要买大一码",
                "-袖子太长，肩膀却太紧",
                "0按平时的尺码买的，大小和预期一样",
            ],
            "fabric": [
                "+@面料柔软，摸起来很高级",
                "+@面料很透气，天热穿也不闷",
                "-@面料扎人，穿着很不舒服",
                "-布料薄得几乎透明",
                "0面料是棉和涤纶混纺的",
            ],
            "washing": [
                "+洗了十几次还跟新的一样",
                "+@洗完一点都没缩水",
                "-@第一次洗就缩了一个码",
                "-@才洗两次就起球了",
                "0标签上写着要冷水洗、自然晾干",
            ],
            "colour": [
                "+实物颜色比图片还好看",
                "+穿了这么久一点都没褪色",
                "-颜色和图片完全不一样",
                "-@掉色严重，把别的衣服都染了",
                "0颜色比图片上稍微深一点",
            ],
            "stitching": [
                "+@走线整齐，做工精细",
                "+收边处理得很好，一根线头都没有",
                "-刚拆开包装就到处是线头",
                "-第二次穿就开线了",
                "0缝线就是普通的机器缝线",
            ],
        },
        "furniture": {
            "assembly": [
                "+二十分钟就装好了，螺丝一个不少",
                "+安装说明清楚易懂",
                "-装了整整一个下午",
                "-有两个预留孔根本对不上",
                "0两个人花了大概一个小时装好",
            ],
            "stability": [
                "+@装好以后稳如泰山",
                "+我家地面不平，放上去也不晃",
                "-@螺丝拧得再紧也还是晃",
                "-现在就已经往一边歪了",
                "0只要不放太重的东西，还算稳",
            ],
            "look": [
                "+@看起来比实际价格高档多了",
                "+@放在客厅里特别好看",
                "-近看表面很廉价",
                "-木纹一看就是贴纸",
                "0表面是纯白色的，款式很简单",
            ],
            "materials": [
                "+用的是实木，很厚实",
                "+这个价位，用料比我想的好",
                "-基本都是廉价的刨花板，边角一碰就掉渣",
                "-@表面特别容易刮花",
                "0材质是刨花板加覆膜饰面",
            ],
            "size": [
                "+正好放进我们预留的角落",
                "+尺寸正适合我们的小户型",
                "-@比标注的尺寸小很多",
                "-@块头太大，普通房间根本放不下",
                "0尺寸和描述完全一致",
            ],
        },
        "bags": {
            "space": [
                "+每样东西都有专门的口袋",
                "+@能装的东西比看起来多得多",
                "-@里面几乎没什么空间",
                "-内袋太小，基本没用",
                "0@有一个主仓和两个侧袋",
            ],
            "zips": [
                "+@拉链很顺滑，也很结实",
                "+拉链从来没卡过",
                "-第一周就坏了一条拉链",
                "-拉链老是卡住内衬",
                "0拉链是普通的塑料拉链",
            ],
            "straps": [
                "+背带有厚实的衬垫，背久了也不累",
                "+背带不会从肩膀上滑下来",
                "-背带勒得肩膀疼",
                "-用了一个月背带就松脱了",
                "0背带长度可以调节",
            ],
            "material": [
                "+遇上一场大暴雨，里面的东西一点都没湿",
                "+面料结实耐磨，脏了一擦就干净",
                "-@根本不防水，和描述的不一样",
                "-面料很快就磨损起毛了",
                "0面料是比较薄的尼龙",
            ],
            "weight": [
                "+@轻得几乎感觉不到",
                "+@装满东西也不重",
                "-@空着就已经很沉了",
                "-就这么个包来说，实在太重了",
                "0重量不到一公斤",
            ],
        },
        "general": {
            "delivery": [
                "+@比预计早了两天到货",
                "+物流很快，快递员态度也很好",
                "-@晚了一个多星期才到",
                "-一开始被送到了错误的地址",
                "0大概五天到货",
            ],
            "packaging": [
                "+包装很仔细，收到时完好无损",
                "+包装简洁，可以完全回收",
                "-箱子被压扁了，一个角还破了",
                "-箱子巨大，里面塞满了塑料",
                "0就是用普通纸箱装的",
            ],
            "price": [
                "+@价格只有大牌的一半",
                "+这个价钱，真的没什么好挑剔的",
                "-就这质量，价格实在太贵了",
                "-@比同类产品贵了一倍",
                "0按原价买的",
            ],
            "seller": [
                "+卖家一个小时内就回复了我的问题",
                "+客服很爽快地补发了缺少的零件",
                "-客服从来不回消息",
                "-问卖家一个简单的问题，两个星期才回复",
                "0目前还没联系过客服",
            ],
        },
    },
    "verdicts": {
        "positive": [
            "对这款{p}非常满意。",
            "还会回购的。",
            "强烈推荐！",
            "这是我用过最好的{p}。",
            "以这个价格来说，真的一点都不差。",
            "挑不出什么毛病。",
            "物超所值。",
            "全家人都很喜欢。",
            "正是我想要的。",
            "五星好评，毫不犹豫。",
            "已经给朋友也买了同款。",
            "说实话，比我预期的好。",
            "这款{p}值得推荐给所有人。",
            "买了一点都不后悔。",
            "总的来说，买得很值。",
            "现在每天都在用。",
        ],
        "negative": [
            "对这款{p}非常失望。",
            "已经申请退货了。",
            "别浪费钱了，还是买别的吧。",
            "根本不值这个价。",
            "不推荐任何人买这款{p}。",
            "给一星都嫌多。",
            "纯属浪费钱。",
            "很后悔买了它。",
            "跟想象中差太远了。",
            "这是我买过最差的{p}。",
            "以后再也不买这个牌子了。",
            "千万别买！",
            "别再踩我踩过的坑了。",
            "不推荐。",
            "这个价格，本来期待更多的。",
            "这钱花得真冤。",
        ],
        "neutral": [
            "能用，但没什么特别的。",
            "中规中矩的{p}，价格也中规中矩。",
            "不算好，也不算差。",
            "还行吧。",
            "三星：能用，但没什么惊喜。",
            "耐不耐用还不好说。",
            "功能都正常，别的也没什么好说的。",
            "一般般。",
            "暂时先留着，但谈不上喜欢。",
            "总体来说是一款很普通的{p}。",
            "偶尔用用还可以。",
            "心情比较复杂。",
            "够用，仅此而已。",
            "值不值得买，要看个人需求。",
            "用几个月之后再来追评。",
            "还可以，但没有让我眼前一亮。",
        ],
    },
    "contexts": [
        "搬新家的时候买的。",
        "已经用了大概三个星期。",
        "趁打折的时候买的。",
        "旧的坏了，买来替换。",
        "看了很多评价才下单的。",
        "家里几乎每天都在用。",
        "是我老公挑的。",
        "第一次在这家店买东西。",
        "入手两个月了。",
        "同事推荐的。",
    ],
    "templates": {
        "positive": [
            (3, "{P1}。{V}"),
            (2, "{P1}，而且{P2}。{V}"),
            (1, "{P1}，{P2}。"),
            (2, "{C}{P1}。{V}"),
            (2, "{N1}，不过{P1}。{V}"),
            (1, "虽然{N1}，但是{P1}。{V}"),
            (2, "{V}{P1}。"),
            (1, "{V}{P1}，{P2}。"),
            (1, "{Z1}。{V}"),
        ],
        "negative": [
            (3, "{N1}。{V}"),
            (2, "{N1}，而且{N2}。{V}"),
            (1, "{N1}，{N2}。"),
            (2, "{C}{N1}。{V}"),
            (2, "{P1}，可是{N1}。{V}"),
            (1, "虽然{P1}，但是{N1}。{V}"),
            (2, "{V}{N1}。"),
            (1, "{V}{N1}，{N2}。"),
            (1, "{Z1}。{V}"),
        ],
        "neutral": [
            (3, "{Z1}。{V}"),
            (2, "{P1}，但是{N1}。{V}"),
            (2, "{N1}，不过{P1}。{V}"),
            (1, "虽然{P1}，但是{N1}。{V}"),
            (2, "{C}{Z1}。{V}"),
            (1, "{Z1}，{Z2}。"),
            (1, "{V}{Z1}。"),
            (1, "{Z1}，{Z2}。{V}"),
            (1, "{C}{Z1}，{Z2}。"),
        ],
    },
}

DATA = {"en": EN, "de": DE, "es": ES, "zh": ZH}

# ---------------------------------------------------------------------------
# Generator
# ---------------------------------------------------------------------------

SLOT_RE = re.compile(r"\{(P1|P2|N1|N2|Z1|Z2|V|C)(\^?)\}")
POLARITY = {"P": "+", "N": "-", "Z": "0"}
MENTION_PROB = 0.6  # chance that a review names the product in an aspect clause


def product_vars(lang: str, product, rng: random.Random) -> dict:
    """Placeholder values for one product (noun plus gender-dependent forms)."""
    if lang == "de":
        noun, g = product
        keys = ("der", "den", "diesem", "diesen", "er", "ihn", "ein", "eins", "adj")
        return {"p": noun, **dict(zip(keys, DE_FORMS[g]))}
    if lang == "es":
        noun, g = product
        keys = ("el", "este", "un", "lo", "o")
        # reviewer's grammatical gender for "encantado/encantada" etc.
        return {"p": noun, "ro": rng.choice("oa"), **dict(zip(keys, ES_FORMS[g]))}
    return {"p": product}


def mention(lang: str, raw: str):
    """Return the clause with the product named explicitly, or None."""
    if lang == "en":
        m = re.search(r"\bit\b(?!')", raw)
        if m:
            return raw[:m.start()] + "the {p}" + raw[m.end():]
    elif lang == "de":
        m = re.search(r"\{(er|ihn)\}", raw)
        if m:
            noun = "{der} {p}" if m.group(1) == "er" else "{den} {p}"
            return raw[:m.start()] + noun + raw[m.end():]
    elif raw.startswith("@"):
        return ("{el} {p} " if lang == "es" else "这款{p}") + raw[1:]
    return None


def cap(s: str) -> str:
    """Upper-case the first letter (skipping leading punctuation such as ¡)."""
    for i, ch in enumerate(s):
        if ch.isalpha():
            return s[:i] + ch.upper() + s[i + 1:]
    return s


def tidy(lang: str, text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if lang == "es":
        # "y" becomes "e" before a word starting with the sound /i/ (i-, hi- but not hie-).
        text = re.sub(r"\b([yY]) (?=(?:[iíIÍ]|[hH][iíIÍ])(?![eE]))", lambda m: ("e" if m.group(1) == "y" else "E") + " ", text)
    return text


def tokens(lang: str, text: str) -> set:
    """Token set for near-duplicate detection (char bigrams for Chinese)."""
    if lang == "zh":
        chars = [c for c in text if "\u4e00" <= c <= "\u9fff" or c.isalnum()]
        return {a + b for a, b in zip(chars, chars[1:])}
    return set(re.findall(r"\w+", text.lower()))


def norm(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def too_similar(a: set, b: set) -> bool:
    if not a or not b:
        return False
    inter = len(a & b)
    return inter / len(a | b) >= MAX_JACCARD or inter / min(len(a), len(b)) >= MAX_OVERLAP


def parse_aspects(L: dict) -> dict:
    """aspects[cat] -> list of (cat, aspect, polarity, index, text)."""
    out = {}
    for cat, aspects in L["aspects"].items():
        items = []
        for key, clauses in aspects.items():
            for i, c in enumerate(clauses):
                assert c[0] in "+-0", (cat, key, c)
                items.append((cat, key, c[0], i, c[1:]))
        out[cat] = items
    return out


def weighted_choice(rng: random.Random, pairs):
    total = sum(w for w, _ in pairs)
    r = rng.random() * total
    for w, item in pairs:
        r -= w
        if r < 0:
            return item
    return pairs[-1][1]


def generate_language(lang: str, n_per_label: int, rng: random.Random) -> list[dict]:
    L = DATA[lang]
    aspects = parse_aspects(L)
    use = Counter()
    product_use = Counter()
    accepted: list[dict] = []
    seen_norm: set = set()
    tok_sets: list[set] = []
    counts = Counter()
    attempts = 0

    while any(counts[lab] < n_per_label for lab in LABELS):
        for label in LABELS:
            if counts[label] >= n_per_label:
                continue
            for _ in range(200):  # tries for this label in this round
                attempts += 1
                if attempts > 500_000:
                    raise RuntimeError(f"{lang}: could not fill {dict(counts)}")
                text = compose(lang, L, aspects, label, rng, use, product_use)
                if text is None:
                    continue
                text, parts, product = text
                key = norm(text)
                if key in seen_norm:
                    continue
                toks = tokens(lang, text)
                if any(too_similar(toks, t) for t in tok_sets):
                    continue
                seen_norm.add(key)
                tok_sets.append(toks)
                use.update(parts)
                product_use[product] += 1
                counts[label] += 1
                accepted.append({"text": text, "label": label})
                break
    return accepted


def compose(lang, L, aspects, label, rng, use, product_use):
    template = weighted_choice(rng, L["templates"][label])
    cat = rng.choice(list(L["products"]))
    prods = L["products"][cat]
    low = min(product_use[(cat, str(p))] for p in prods)
    product = rng.choice([p for p in prods if product_use[(cat, str(p))] <= low + 1])
    pv = product_vars(lang, product, rng)

    pool = aspects[cat] + aspects["general"]
    want_mention = rng.random() < MENTION_PROB
    named = False  # does the review already name the product (in its verdict)?
    used_keys: set = set()
    parts: list = []
    values = {}
    slots = [m.group(1) for m in SLOT_RE.finditer(template)]
    # choose verdict and context first, so we know whether the verdict names the product
    for slot in sorted(slots, key=lambda x: x not in ("V", "C")):
        if slot == "V":
            verdicts = L["verdicts"][label]
            cands = [i for i in range(len(verdicts)) if use[("V", label, i)] < CAP_VERDICT]
            if not cands:
                return None
            i = rng.choice(cands)
            parts.append(("V", label, i))
            values[slot] = cap(verdicts[i].format(**pv))
            named = named or "{p}" in verdicts[i]
        elif slot == "C":
            ctx = L["contexts"]
            cands = [i for i in range(len(ctx)) if use[("C", i)] < CAP_CONTEXT]
            if not cands:
                return None
            i = rng.choice(cands)
            parts.append(("C", i))
            values[slot] = cap(ctx[i].format(**pv))
        else:
            pol = POLARITY[slot[0]]
            # In a mixed review, the clause that agrees with the verdict is about
            # the product itself (not delivery/packaging/seller), so the verdict
            # stays plausible.
            winning = {"positive": "P", "negative": "N"}.get(label)
            mixed = "P1" in slots and "N1" in slots
            src = aspects[cat] if mixed and slot[0] == winning else pool
            cands = [a for a in src
                     if a[2] == pol and (a[0], a[1]) not in used_keys
                     and use[("A",) + a[:4]] < CAP_ASPECT]
            if lang == "zh" and template.startswith("虽然{" + slot):
                cands = [a for a in cands if "，" not in a[4]]
            if not cands:
                return None
            # prefer less-used clauses
            low = min(use[("A",) + a[:4]] for a in cands)
            cands = [a for a in cands if use[("A",) + a[:4]] <= low + 1]
            a = rng.choice(cands)
            used_keys.add((a[0], a[1]))
            parts.append(("A",) + a[:4])
            raw = a[4]
            if want_mention and not named and mention(lang, raw):
                raw = mention(lang, raw)
                named = True
            values[slot] = raw.lstrip("@").format(**pv)

    def fill(m):
        v = values[m.group(1)]
        return cap(v) if m.group(2) else v

    # "A and B": put a comma before the conjunction when A already contains a
    # comma or the same conjunction (German requires it after a subordinate clause).
    conj = {"en": "and", "de": "und", "es": "y"}.get(lang)
    if conj:
        def comma(m):
            first = values[m.group(1)]
            if "," in first or f" {conj} " in first:
                return m.group(0).replace(f" {conj}", f", {conj}", 1)
            return m.group(0)
        template = re.sub(r"\{(P1|N1|Z1)\^?\} " + conj + r"(?=[ ,])", comma, template)

    text = tidy(lang, SLOT_RE.sub(fill, template))
    return text, parts, (cat, str(product))


def split(items: list[dict], rng: random.Random) -> dict:
    by_label = {lab: [x for x in items if x["label"] == lab] for lab in LABELS}
    out = {name: [] for name in SPLIT_SIZES}
    for lab in LABELS:
        xs = by_label[lab]
        rng.shuffle(xs)
        start = 0
        for name, n in SPLIT_SIZES.items():
            out[name].extend(xs[start:start + n])
            start += n
    for name in out:
        rng.shuffle(out[name])
    return out


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps({"text": r["text"], "label": r["label"]}, ensure_ascii=False) + "\n")


def check(out_dir: Path) -> int:
    """Validate the files: schema, labels, exact and near duplicates, scripts."""
    problems = []
    all_norm: dict = {}
    table = []
    for lang in LANGS:
        lang_toks = []
        for name in SPLIT_SIZES:
            path = out_dir / f"{lang}.{name}.jsonl"
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
            labels = Counter(r["label"] for r in rows)
            table.append((lang, name, len(rows), labels))
            for r in rows:
                if set(r) != {"text", "label"} or r["label"] not in LABELS:
                    problems.append(f"{path.name}: bad row {r}")
                t = r["text"]
                k = norm(t)
                if k in all_norm:
                    problems.append(f"duplicate: {t!r} ({all_norm[k]} and {path.name})")
                all_norm[k] = path.name
                if lang == "zh" and re.search(r"[\u4e00-\u9fff] [\u4e00-\u9fff]|[,.!?;:]", t):
                    problems.append(f"{path.name}: ASCII punctuation/space in Chinese: {t!r}")
                toks = tokens(lang, t)
                for other, oname in lang_toks:
                    if too_similar(toks, other):
                        problems.append(f"near-duplicate in {lang}: {t!r} ({oname})")
                lang_toks.append((toks, path.name))
    print("| language | split | examples | negative | neutral | positive |")
    print("|---|---|---:|---:|---:|---:|")
    for lang, name, n, labels in table:
        print(f"| {lang} | {name} | {n} | {labels['negative']} | {labels['neutral']} | {labels['positive']} |")
    for p in problems:
        print("PROBLEM:", p, file=sys.stderr)
    return 1 if problems else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--check", action="store_true", help="only validate existing files")
    args = ap.parse_args()
    if not args.check:
        n_per_label = sum(SPLIT_SIZES.values())
        for lang in LANGS:
            rng = random.Random(f"{SEED}-{lang}")
            items = generate_language(lang, n_per_label, rng)
            for name, rows in split(items, rng).items():
                write_jsonl(args.out / f"{lang}.{name}.jsonl", rows)
    return check(args.out)


if __name__ == "__main__":
    sys.exit(main())
